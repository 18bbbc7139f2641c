"""Where csconv reads and writes: the only place a path or a URL is opened.

Files are named by strings: a local path, or a URL any fsspec filesystem serves
(`gs://`, `s3://`, `memory://`, ...). Local paths stay native (local.py: O_DIRECT shard
writes, a hidden temporary renamed into place); URLs go through fsspec (remote.py:
uploads published only at commit); zip members are read in place (zipfs.py), from
either. Each function here picks the right one, so the modules above never ask which.
"""

from __future__ import annotations

import atexit
import os
import posixpath
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

from . import local, remote
from ..core.errors import InputError
from .local import DIGESTS, OutputError, describe_os_error
from .remote import StorageError, configure, is_url

__all__ = [
    "DIGESTS", "OutputError", "StorageError", "configure", "is_url", "join", "basename",
    "list_names", "is_dir", "is_file", "file_size", "read_bytes", "remove", "remove_all", "make_output_dir",
    "write_atomically", "create_exclusively", "write_file_unsynced", "write_files_unsynced", "sync_file_system",
    "list_files", "file_digests", "open_shard_file", "open_adopted_shard", "local_copy",
]


def in_this_process_only(path: str) -> bool:
    """memory:// lives in the process that writes it: no worker processes may share it."""
    return is_url(path) and remote.protocol_of(path) == "memory"


def join(base: str, *names: str) -> str:
    return remote.join(base, *names) if is_url(base) else os.path.join(base, *names)


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if is_url(path) else os.path.basename(path)


def list_names(directory: str) -> list[str]:
    """The names in a folder (or under a bucket prefix); an OutputError when it cannot be listed."""
    if is_url(directory):
        return remote.list_names(directory)
    try:
        return sorted(os.listdir(directory))
    except OSError as error:
        raise OutputError(f"{directory}: cannot list the folder ({describe_os_error(error)})") from None


def files_by_city(directory: str) -> list[tuple[str, str, str]]:
    """(path, city, name) of every file in a <city>/ folder of `directory` (a split's
    folder), unsorted and unfiltered; none when the folder is missing. A bucket is
    listed once, never a request per city or file."""
    if is_url(directory):
        found = []
        for url in remote.find_files(directory):
            parts = url[len(directory.rstrip("/")) + 1:].split("/")
            if len(parts) == 2 and parts[1]:
                found.append((url, parts[0], parts[1]))
        return found
    if not os.path.isdir(directory):
        return []
    found = []
    for city in os.listdir(directory):
        city_dir = os.path.join(directory, city)
        if os.path.isdir(city_dir):
            found += [(os.path.join(city_dir, name), city, name) for name in os.listdir(city_dir)]
    return found


def read_input(path: str) -> bytes:
    """The bytes of an input file or object; an InputError naming it when it cannot be read."""
    if is_url(path):
        try:
            return remote.read_bytes(path)
        except StorageError as error:
            raise InputError(path, str(error).removeprefix(f"{path}: ")) from None
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(path, "dangling symbolic link") from None
        raise InputError(path, "file not found") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, expected a file") from None
    except OSError as error:
        raise InputError(path, f"cannot read ({error.strerror})") from None


def is_dir(path: str) -> bool:
    return remote.is_dir(path) if is_url(path) else os.path.isdir(path)


def is_file(path: str) -> bool:
    return remote.info(path) is not None if is_url(path) else os.path.isfile(path)


def file_size(path: str) -> int | None:
    """The size of a file or object, None when there is none."""
    if is_url(path):
        found = remote.info(path)
        return None if found is None else int(found["size"])
    try:
        return os.path.getsize(path) if os.path.isfile(path) else None
    except OSError:
        return None


def read_bytes(path: str) -> bytes:
    """A whole small file (manifest, completion record); FileNotFoundError when absent."""
    if is_url(path):
        data = remote.read_if_there(path)
        if data is None:
            raise FileNotFoundError(path)
        return data
    with open(path, "rb") as f:
        return f.read()


def remove(path: str) -> None:
    """Remove a file or object if it is there; an OutputError naming it when it cannot be."""
    if is_url(path):
        remote.remove(path)
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise OutputError(f"{path}: cannot remove ({describe_os_error(error)})") from None


def remove_all(paths: list[str]) -> None:
    """remove() of every path, all on one filesystem: for a bucket, in batched requests."""
    if paths and is_url(paths[0]):
        remote.remove_all(paths)
        return
    for path in paths:
        remove(path)


def make_output_dir(directory: str) -> None:
    """Create the folder (and its parents); for a bucket, check it exists and is usable."""
    if is_url(directory):
        remote.check_bucket(directory)
        return
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise OutputError(f"{directory}: --output_dir names a file, not a folder")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{directory}: cannot create the output folder ({describe_os_error(error)})") from None


def write_atomically(path: str, data: bytes) -> None:
    """A small file that appears whole or not at all."""
    (remote.write_atomically if is_url(path) else local.write_atomically)(path, data)


def create_exclusively(path: str, data: bytes) -> bool | None:
    """Create a small object (or file) holding `data` only if none is there: True if
    created, False if one was there, None if this store cannot create exclusively."""
    if is_url(path):
        return remote.create_exclusively(path, data)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError as error:
        raise OutputError(f"{path}: cannot create ({describe_os_error(error)})") from None
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return True


def write_file_unsynced(path: str, data) -> None:
    """One of a run's many small files (the prework's), published only complete: locally
    renamed into place without an fsync (the run syncs its file system once at its end,
    sync_file_system); in a bucket, one object uploaded as write_atomically does."""
    if is_url(path):
        remote.write_atomically(path, bytes(data))
    else:
        local.write_file_unsynced(path, data)


def write_files_unsynced(files: dict[str, bytes]) -> None:
    """write_file_unsynced() for each of a few files (a prework frame's outputs); objects
    of one bucket are uploaded at once."""
    urls = {path: data for path, data in files.items() if is_url(path)}
    for path, data in files.items():
        if path not in urls:
            local.write_file_unsynced(path, data)
    remote.write_many({url: bytes(data) for url, data in urls.items()})


def sync_file_system(path: str) -> None:
    """Everything written under the local folder `path` onto stable storage; for a bucket
    nothing: an object is durable once its upload is published."""
    if not is_url(path):
        local.sync_file_system(path)


def list_files(directory: str) -> dict[str, dict]:
    """Every file below a folder or bucket prefix, by path: {path: {"size", "crc32c"}},
    crc32c the store's own where its listing carries one (GCS), else None. A bucket is
    listed in one (paginated) listing, never a request per object."""
    if is_url(directory):
        return remote.find_objects(directory)
    found = {}
    for folder, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(folder, name)
            try:
                found[path] = {"size": os.path.getsize(path), "crc32c": None}
            except OSError:
                pass  # gone meanwhile
    return found


def file_digests(path: str, names) -> dict[str, str]:
    """The named checksums of a file or object; for an object, the store's own CRC32C
    when it keeps one."""
    if not is_url(path):
        return local.file_digests(path, names)
    if tuple(names) == ("crc32c",):
        return {"crc32c": remote.crc32c_of(path)}
    return remote.digests_by_reading(path, names)


def open_shard_file(directory: str, name: str, sha256: bool = False, staging_area: str | None = None):
    """A stream for one shard that appears under `name` only at commit(); for a bucket,
    commit() stages it in `staging_area` (make_staging_area()) as `staged`, whose
    upload() publishes it."""
    if is_url(directory):
        return StagedShard(directory, name, sha256=sha256, staging_area=staging_area)
    return local.ShardFile(directory, name, sha256=sha256)


def open_adopted_shard(directory: str, name: str, sha256: bool = False, staging_area: str | None = None):
    """A temporary path for a library that writes a shard itself (Sink.writes_path);
    staged for a bucket as open_shard_file's stream is."""
    if is_url(directory):
        return StagedUpload(directory, name, sha256=sha256, staging_area=staging_area)
    return local.AdoptedShardFile(directory, name, sha256=sha256)


def remove_leftovers(directory: str, names) -> None:
    """What a killed run left for `names`: temporary files, or unfinished S3 uploads."""
    if is_url(directory):
        remote.abort_stale_uploads(directory, names)
        return
    for name in names:
        try:
            os.unlink(os.path.join(directory, local.temp_name(name)))
        except OSError:
            pass  # already gone, or the folder itself is unusable: nothing more to clean


STAGING_PREFIX = "csconv-staging-"


def make_staging_area() -> str:
    """A local folder for one run's shards on their way to a bucket, named after this
    process so that a later run can tell a killed run's folder (its process gone) and
    remove it; the caller removes its own with remove_staging_area()."""
    _remove_abandoned_staging_areas()
    return tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-")


def remove_staging_area(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _remove_abandoned_staging_areas() -> None:
    parent = tempfile.gettempdir()
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(STAGING_PREFIX):
            continue
        pid = name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not local.process_exists(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


@dataclass(frozen=True)
class Staged:
    """A complete shard in a local staging folder, to be uploaded to `url`. A worker
    process makes it; the main process uploads it (pipeline/uploads.py), so that the
    worker goes on converting while the upload runs."""

    local_path: str
    url: str

    def upload(self) -> None:
        """Publish the object (only when complete, as remote.upload_file does), then
        remove the local copy; the copy is removed on failure too."""
        try:
            remote.upload_file(self.local_path, self.url)
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(os.path.dirname(self.local_path), ignore_errors=True)


class StagedShard:
    """A shard for a bucket, written to a local staging folder first (ShardFile: the
    same blocks and running checksums as on disk, but left in the page cache) and
    handed over by commit() as `staged`, for the caller to upload whole.

    Whole-file uploads are the client libraries' fastest path: against the test S3
    server, s3fs uploaded the 30 shards of 64 frames (523 MiB), two at a time, in 7.0 s
    with put_file and in 12 s as streamed writes.
    """

    def __init__(self, directory: str, name: str, sha256: bool = False, staging_area: str | None = None):
        self.final_path = remote.join(directory, name)
        self.staged: Staged | None = None
        self._folder = tempfile.mkdtemp(prefix="shard-", dir=staging_area)
        try:
            self._local = local.ShardFile(self._folder, name, sha256=sha256, durable=False)
        except BaseException:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise
        self.temp_path = self._local.temp_path

    def __getattr__(self, name: str):
        # The stream surface a sink writes through (write, writelines, tell, ...),
        # and size and digests, are the local file's.
        if name == "_local":
            raise AttributeError(name)
        return getattr(self._local, name)

    def commit(self) -> None:
        try:
            self._local.commit()
        except BaseException:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise
        self.staged = Staged(self._local.final_path, self.final_path)

    def abort(self) -> None:
        try:
            self._local.abort()
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)


class StagedUpload(local.AdoptedShardFile):
    """AdoptedShardFile for a bucket: the library writes a file in a local staging
    folder, which commit() checksums and hands over as `staged`, for the caller to upload."""

    def __init__(self, directory: str, name: str, sha256: bool = False, staging_area: str | None = None):
        self._staging_area = staging_area
        super().__init__(directory, name, sha256)
        self.final_path = remote.join(directory, name)

    def _make_temporary(self, directory: str, name: str) -> str:
        folder = tempfile.mkdtemp(prefix="shard-", dir=self._staging_area)
        path = os.path.join(folder, local.temp_name(name))
        open(path, "wb").close()
        return path

    def commit(self) -> None:
        try:
            self.size = os.path.getsize(self.temp_path)
            self._digests = local.file_digests(self.temp_path, DIGESTS if self._sha256 else ("crc32c",))
        except BaseException:
            self.abort()
            raise
        self.closed = True
        self.staged = Staged(self.temp_path, self.final_path)

    def abort(self) -> None:
        self.closed = True
        shutil.rmtree(os.path.dirname(self.temp_path), ignore_errors=True)


_cache: dict[tuple[int, str], str] = {}


def cached_copy(path: str) -> str:
    """A local path holding the file for as long as this process lives: itself, or for an
    object one download, kept for random access (csconv.read) and removed at exit."""
    if not is_url(path):
        return path
    key = (os.getpid(), path)
    if key not in _cache:
        folder = tempfile.mkdtemp(prefix="csconv-read-")
        atexit.register(shutil.rmtree, folder, True)
        local_path = os.path.join(folder, basename(path))
        remote.download(path, local_path)
        _cache[key] = local_path
    return _cache[key]


@contextmanager
def local_copy(path: str):
    """A local path holding the file: itself, or for an object a temporary download
    (readers such as ArrayRecord's take only local paths)."""
    if not is_url(path):
        yield path
        return
    fd, temp_path = tempfile.mkstemp(prefix="csconv-", suffix="-" + basename(path))
    try:
        os.close(fd)
        remote.download(path, temp_path)
        yield temp_path
    finally:
        try:
            os.unlink(temp_path)
        except FileNotFoundError:
            pass

