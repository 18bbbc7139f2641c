"""Objects in a bucket, through fsspec: gs:// (gcsfs), s3:// (s3fs), memory:// and any
other protocol fsspec knows.

Writing keeps the promise a local rename keeps: an object is uploaded with
`autocommit=False` and published by `commit()` only when complete (S3 completes its
multipart upload, GCS finalises its resumable upload); `discard()` aborts it. fsspec's
default, autocommit, would publish whatever a file holds when it is closed, and
`__exit__`/`__del__` close it, so a failed write would leave a truncated object under
the final name.
"""

from __future__ import annotations

import base64
import posixpath
import re
import time

from ..core.errors import CsconvError
from .local import OutputError, digests_of

# Which extra brings the library a protocol needs.
EXTRAS = {"gs": "gcs", "gcs": "gcs", "s3": "s3", "s3a": "s3"}
# Zip archives in a bucket are read through a read-ahead cache of this size: one request
# brings a whole 2 MB image member, its local header included.
ARCHIVE_BLOCK = 8 << 20
# Transient failures (connection refused or reset, timeouts, 5xx the library gave up on)
# are retried after these pauses; the client libraries retry single requests themselves.
RETRY_PAUSES = (0.5, 2.0, 5.0)

_storage_options: dict = {}


class StorageError(OutputError):
    """A bucket or object that cannot be used: one line naming the URL. Reading inputs
    turns it into an InputError naming the file; anywhere else it stops the run, as a
    failing output disk does."""


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+")


def is_url(text: str) -> bool:
    """`scheme://...` (a Windows drive `C:\\` is no scheme: one letter); file:// stays local."""
    scheme, sep, _ = str(text).partition("://")
    return bool(sep) and _SCHEME.fullmatch(scheme) is not None and scheme != "file"


def configure(options: dict | None) -> None:
    """Options passed to every fsspec filesystem this process opens (`--storage_options`)."""
    global _storage_options
    _storage_options = dict(options or {})


def protocol_of(url: str) -> str:
    return url.partition("://")[0]


def filesystem(url: str):
    """(fsspec filesystem, path within it) for `url`; a one-line error when its library is missing."""
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError:
        raise StorageError(f"{url}: reading URLs needs fsspec: pip install fsspec") from None
    protocol = protocol_of(url)
    try:
        fs, path = url_to_fs(url, **_storage_options)
    except ImportError as error:
        extra = EXTRAS.get(protocol)
        hint = f"pip install 'csconv[{extra}]'" if extra else f"install the fsspec implementation of {protocol}://"
        raise StorageError(f"{url}: {protocol}:// needs a library that is not installed ({error}); {hint}") from None
    except ValueError as error:
        if protocol not in fsspec.available_protocols():
            raise StorageError(f"{url}: unknown storage protocol {protocol}://") from None
        raise StorageError(f"{url}: {error}") from None
    except TypeError as error:  # an option the filesystem does not take
        raise StorageError(f"{url}: --storage_options not accepted by {protocol}:// ({error})") from None
    _quiet_lost_connections(getattr(fs, "loop", None))
    return fs, path


def _quiet_lost_connections(loop) -> None:
    """On the event loop of an async filesystem (s3fs, gcsfs: fsspec's one per process),
    leave unlogged the exception of a task nobody awaited when it is a lost connection.
    aiohttp sends a request's body in a task of its own; when the connection is reset the
    request fails (retried, or reported as one line naming the URL) and that task's
    exception is left behind, which asyncio would print as a traceback on stderr."""
    if loop is None or getattr(loop, "_csconv_quiet", False):
        return

    def handler(loop, context):
        error = context.get("exception")
        if error is not None and "never retrieved" in context.get("message", "") and is_transient(error):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    loop._csconv_quiet = True


def join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *names])


def _names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__}


def is_transient(error: BaseException) -> bool:
    names = _names(error)
    if names & {"FileNotFoundError", "PermissionError", "NoCredentialsError", "DefaultCredentialsError",
                "IsADirectoryError", "NotADirectoryError"}:
        return False
    return bool(names & {"ConnectionError", "TimeoutError", "ClientConnectionError", "ServerDisconnectedError",
                         "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                         "ConnectionClosedError", "TransportError", "ServerTimeoutError"}) or (
        "HttpError" in names and getattr(error, "code", None) in (429, 500, 502, 503, 504)
    )


def describe(error: BaseException) -> str:
    """What went wrong, in words a user acts on."""
    names = _names(error)
    if "FileNotFoundError" in names:
        return "not found (no such bucket or object)"
    if "NoSuchBucket" in str(error) or "bucket does not exist" in str(error).lower():
        return "no such bucket"
    if "PermissionError" in names or getattr(error, "code", None) in (401, 403):
        return f"permission denied ({_first_line(error)})"
    if names & {"NoCredentialsError", "DefaultCredentialsError", "PartialCredentialsError"}:
        return ("no credentials found (set the store's usual environment, e.g. AWS_ACCESS_KEY_ID, "
                "GOOGLE_APPLICATION_CREDENTIALS, or --storage_options)")
    if is_transient(error):
        return f"cannot reach the store ({_first_line(error)})"
    return f"{type(error).__name__}: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def retrying(url: str, doing: str, operation):
    """operation(), retried with backoff while it fails for a transient reason; a
    StorageError naming `url` when it fails for good."""
    for pause in (*RETRY_PAUSES, None):
        try:
            return operation()
        except CsconvError:
            raise
        except Exception as error:  # noqa: BLE001 - every client library has its own exceptions
            if pause is None or not is_transient(error):
                raise StorageError(f"{url}: cannot {doing}: {describe(error)}") from None
            time.sleep(pause)


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    return retrying(url, "read", lambda: fs.cat_file(path))


def read_if_there(url: str) -> bytes | None:
    """The object's bytes, or None when there is no such object: one request, not a
    lookup and then a read."""
    fs, path = filesystem(url)

    def read():
        try:
            return fs.cat_file(path)
        except FileNotFoundError:
            return None

    return retrying(url, "read", read)


def download(url: str, local_path: str) -> None:
    fs, path = filesystem(url)
    retrying(url, "download", lambda: fs.get_file(path, local_path))


def info(url: str) -> dict | None:
    """The object's metadata, or None when there is no such object (a folder is not one)."""
    fs, path = filesystem(url)

    def look():
        try:
            found = fs.info(path)
        except FileNotFoundError:
            return None
        return found if found.get("type") == "file" else None

    return retrying(url, "look up", look)


def is_dir(url: str) -> bool:
    fs, path = filesystem(url)
    return retrying(url, "look up", lambda: fs.isdir(path))


def list_names(url: str) -> list[str]:
    """Names directly under the prefix `url` (objects and sub-prefixes), fresh from the store."""
    fs, path = filesystem(url)

    def listing():
        fs.invalidate_cache(path)
        try:
            return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))
        except FileNotFoundError:
            return []

    return retrying(url, "list", listing)


def find_files(url: str) -> list[str]:
    """Every object below the prefix `url`, as URLs spelled as `url` is, in one
    (paginated) listing."""
    return list(_listed_objects(url))


def find_objects(url: str) -> dict[str, dict]:
    """find_files() with each object's size, and its CRC32C (8 hex digits) where the
    listing carries the store's own (GCS): {url: {"size": int, "crc32c": str | None}}."""
    return _listed_objects(url)


def _listed_objects(url: str) -> dict[str, dict]:
    fs, path = filesystem(url)
    base, root = url.rstrip("/"), path.rstrip("/")

    def listing():
        fs.invalidate_cache(root)
        try:
            return fs.find(root, detail=True)
        except FileNotFoundError:
            return {}

    # The filesystem's own path form differs by protocol (memory:// keeps a leading
    # slash), so each found path is re-rooted on the URL given rather than rebuilt.
    found = {}
    for name, details in retrying(url, "list", listing).items():
        if name.startswith(root + "/") and details.get("type", "file") == "file":
            found[base + name[len(root):]] = {"size": int(details.get("size") or 0),
                                             "crc32c": _stored_crc32c(details)}
    return found


def _stored_crc32c(details: dict) -> str | None:
    stored = details.get("crc32c")
    if isinstance(stored, str):
        try:
            return base64.b64decode(stored).hex()  # GCS: base64 of the big-endian value
        except ValueError:
            return None
    return None


def remove(url: str) -> None:
    fs, path = filesystem(url)

    def rm():
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass

    retrying(url, "remove", rm)


def remove_all(urls: list[str]) -> None:
    """Remove objects of one filesystem, those that are there, in as few requests as the
    store allows (S3 and GCS: batches of up to 1,000 and 100)."""
    if not urls:
        return
    fs, _ = filesystem(urls[0])
    paths = [filesystem(url)[1] for url in urls]

    def rm() -> bool:
        try:
            fs.rm(paths)
        except FileNotFoundError:  # a filesystem that refuses a batch naming a missing object
            return False
        return True

    if not retrying(urls[0], "remove", rm):
        for url in urls:
            remove(url)


def check_bucket(url: str) -> None:
    """Fail now, as one line, when the bucket is missing or unreadable, not in a worker."""
    fs, path = filesystem(url)
    bucket = path.split("/", 1)[0]
    if protocol_of(url) == "memory":
        return
    def look():
        if not fs.exists(bucket):
            raise StorageError(f"{url}: no such bucket ({protocol_of(url)}://{bucket})")
    retrying(url, "use the bucket", look)


def crc32c_of(url: str) -> str:
    """The object's CRC32C as csconv writes it (8 hex digits): the store's own when it
    keeps one (GCS), else by reading the object once."""
    stored = _stored_crc32c(info(url) or {})
    if stored is not None:
        return stored
    return digests_by_reading(url, ("crc32c",))["crc32c"]


def digests_by_reading(url: str, names) -> dict[str, str]:
    fs, path = filesystem(url)

    def read():
        with fs.open(path, "rb", block_size=ARCHIVE_BLOCK) as f:
            return digests_of(iter(lambda: f.read(ARCHIVE_BLOCK), b""), names)

    return retrying(url, "read", read)


def open_archive(url: str):
    """A seekable file over a zip archive in a bucket, read ahead a whole image at a time."""
    fs, path = filesystem(url)
    return retrying(url, "open", lambda: fs.open(path, "rb", block_size=ARCHIVE_BLOCK, cache_type="readahead"))


def abort_stale_uploads(directory_url: str, names) -> int:
    """Abort the S3 multipart uploads a killed run left for `names` in the folder (they
    hold storage, invisibly); a name ending in "/" stands for everything under it. Other
    stores expire theirs. Returns how many were aborted."""
    if protocol_of(directory_url) not in ("s3", "s3a"):
        return 0
    fs, path = filesystem(directory_url)
    bucket, _, prefix = path.partition("/")
    keys = {posixpath.join(prefix, name) if prefix else name for name in names}
    folders = tuple(key for key in keys if key.endswith("/"))
    aborted = 0
    try:
        uploads = fs.list_multipart_uploads(bucket)
        for upload in uploads:
            key = upload.get("Key")
            if key in keys or (folders and str(key).startswith(folders)):
                fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
    except Exception:  # noqa: BLE001 - a store without the call, or no right to it: not the run's business
        return aborted
    return aborted


def upload_file(local_path: str, url: str) -> None:
    """Upload a finished local file to `url` with the library's own file upload, which
    publishes the object only when complete (one PUT, or a multipart upload completed
    at the end; GCS: a simple or resumable upload)."""
    fs, path = filesystem(url)
    retrying(url, "upload", lambda: fs.put_file(local_path, path))


def create_exclusively(url: str, data: bytes) -> bool | None:
    """One PUT that creates the object only if none is there (S3: If-None-Match: *, GCS:
    ifGenerationMatch=0): True if created, False if one was there, None when the
    filesystem has no exclusive create."""
    fs, path = filesystem(url)

    def put() -> bool | None:
        try:
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except (TypeError, NotImplementedError, ValueError):
            return None
        return True

    return retrying(url, "create", put)


# Stores whose own one-request upload publishes an object only complete: S3's PutObject
# (s3fs multiparts only above 100 MB, completed at the end) and GCS's simple upload
# (resumable above 50 MB, finalised at the end). A small object goes in one request
# there, instead of the three of an upload with autocommit=False (start, part, commit):
# the prework writes thousands of small files.
ONE_REQUEST_UPLOADS = {"s3", "s3a", "gs", "gcs"}


def write_many(objects: dict[str, bytes]) -> None:
    """write_atomically() for each of a few small objects: where each is one request
    (ONE_REQUEST_UPLOADS) and they share a filesystem, all at once; a transient failure
    sends them all again. A failure may leave some of them published, each whole."""
    if not objects:
        return
    first = next(iter(objects))
    fs, _ = filesystem(first)
    if protocol_of(first) not in ONE_REQUEST_UPLOADS or any(filesystem(url)[0] is not fs for url in objects):
        for url, data in objects.items():
            write_atomically(url, data)
        return
    by_path = {filesystem(url)[1]: data for url, data in objects.items()}
    retrying(first, "upload", lambda: fs.pipe(by_path))


def write_atomically(url: str, data: bytes) -> None:
    """A small object (manifest, completion record, prework file) published whole or not
    at all. Where the upload is one request (ONE_REQUEST_UPLOADS) a transient failure
    sends it again."""
    fs, path = filesystem(url)
    if protocol_of(url) in ONE_REQUEST_UPLOADS:
        retrying(url, "upload", lambda: fs.pipe_file(path, data))
        return
    upload = retrying(url, "start an upload", lambda: fs.open(path, "wb", autocommit=False))
    try:
        upload.write(data)
        upload.close()  # sends the bytes; with autocommit off, publishes nothing
        upload.commit()
    except Exception as error:  # noqa: BLE001 - every client library has its own exceptions
        try:
            upload.discard()
        except Exception:  # noqa: BLE001 - the store may be gone; an unfinished upload is never visible
            pass
        raise StorageError(f"{url}: cannot upload: {describe(error)}; nothing was published") from None
