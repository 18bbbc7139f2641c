"""Shard files that appear under their final name only when complete."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from crc32c import crc32c

from .core.errors import CsconvError

TEMP_SUFFIX = ".partial"
# Dirty pages are flushed and dropped every this many bytes: letting the page cache
# grow over a multi-GB run costs more CPU than the conversion itself.
_SYNC_EVERY = 32 << 20
_IOV_MAX = 1024
# Checksumming and syncing run on a helper thread (both release the GIL), so the worker
# decodes the next frame meanwhile; this many tasks may be queued before it waits.
_MAX_PENDING = 4


def temp_name(name: str) -> str:
    return f".{name}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _load_sync_file_range():
    """Linux's sync_file_range(2), which Python's os module does not offer, or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]

    def sync_file_range(fd: int, offset: int, length: int, flags: int) -> None:
        if function(fd, offset, length, flags) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return sync_file_range


_sync_file_range = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2
_SYNC_FILE_RANGE_WAIT_ALL = 1 | 2 | 4  # wait before, write, wait after


class OutputError(CsconvError):
    pass


class ShardFile:
    """A binary stream written to a hidden temporary file, renamed into place by commit()."""

    def __init__(self, directory: str, name: str, sha256: bool = False):
        self.directory = directory
        self.final_path = os.path.join(directory, name)
        self.temp_path = os.path.join(directory, temp_name(name))
        self.size = 0
        self.closed = False
        self._unsynced = 0
        self._crc32c = 0
        self._sha256 = hashlib.sha256() if sha256 else None
        self._fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._writeback_started = 0
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csconv-shard")
        self._pending: deque[Future] = deque()

    # -- the file-object surface sink writers use ---------------------------------------
    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def write(self, data) -> int:
        self.writelines((data,))
        return memoryview(data).nbytes

    def writelines(self, parts) -> None:
        views = [memoryview(p).cast("B") for p in parts]
        # The buffers are immutable bytes or arrays nobody writes to again, so the
        # helper may hash them after this call returns.
        self._in_background(self._hash, views)
        for start in range(0, len(views), _IOV_MAX):
            self._writev(views[start : start + _IOV_MAX])

    def _hash(self, views: list[memoryview]) -> None:
        for view in views:
            self._crc32c = crc32c(view, self._crc32c)
            if self._sha256 is not None:
                self._sha256.update(view)

    def _in_background(self, task, *args) -> None:
        while len(self._pending) >= _MAX_PENDING:
            self._wait_oldest()
        self._pending.append(self._helper.submit(task, *args))

    def _wait_oldest(self) -> None:
        try:
            self._pending.popleft().result()
        except OSError as error:
            raise self._write_error(error) from None

    def _drain(self) -> None:
        while self._pending:
            self._wait_oldest()

    def _writev(self, views: list[memoryview]) -> None:
        while views:
            try:
                written = os.writev(self._fd, views)
            except OSError as error:
                raise self._write_error(error) from None
            self.size += written
            self._unsynced += written
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]
        if self._unsynced >= _SYNC_EVERY:
            self._unsynced = 0
            self._in_background(self._drop_cache, self.size)

    def _write_error(self, error: OSError) -> OutputError:
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return OutputError(
                f"{self.final_path}: output disk full or file size limit reached ({error.strerror}); "
                "its temporary file is removed"
            )
        return OutputError(f"{self.final_path}: cannot write ({error.strerror}); its temporary file is removed")

    def _drop_cache(self, written: int | None = None) -> None:
        """Write back what is written and drop it from the page cache.

        With a byte count (during the run): start writeback of the newest window and
        wait only for the older data, so the disk works while the next frames are
        computed. Without one (at commit): everything, durably.
        """
        if written is not None and _sync_file_range is not None:
            start = self._writeback_started
            _sync_file_range(self._fd, start, written - start, _SYNC_FILE_RANGE_WRITE)
            if start:
                _sync_file_range(self._fd, 0, start, _SYNC_FILE_RANGE_WAIT_ALL)
                os.posix_fadvise(self._fd, 0, start, os.POSIX_FADV_DONTNEED)
            self._writeback_started = written
            return
        os.fdatasync(self._fd)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    # -- completion ---------------------------------------------------------------------
    @property
    def digests(self) -> dict[str, str]:
        """Checksums of the whole file, as the manifest records them."""
        self._drain()
        found = {"crc32c": f"{self._crc32c:08x}"}
        if self._sha256 is not None:
            found["sha256"] = self._sha256.hexdigest()
        return found

    def commit(self) -> None:
        self._drain()
        try:
            self._drop_cache()
        except OSError as error:
            raise self._write_error(error) from None
        self._helper.shutdown()
        os.close(self._fd)
        self.closed = True
        os.replace(self.temp_path, self.final_path)
        sync_directory(self.directory)

    def abort(self) -> None:
        self._helper.shutdown(wait=True, cancel_futures=True)
        if not self.closed:
            os.close(self._fd)
            self.closed = True
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Writers may close their stream; the shard stays uncommitted until commit()."""


DIGESTS = ("crc32c", "sha256")


def file_digests(path: str, names) -> dict[str, str]:
    """The named checksums ("crc32c", "sha256") of a file on disk, read once."""
    crc, sha256 = 0, hashlib.sha256() if "sha256" in names else None
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            crc = crc32c(chunk, crc)
            if sha256 is not None:
                sha256.update(chunk)
    found = {"crc32c": f"{crc:08x}"}
    if sha256 is not None:
        found["sha256"] = sha256.hexdigest()
    return {name: found[name] for name in names}


def sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str, data: bytes) -> None:
    directory, name = os.path.split(path)
    shard = ShardFile(directory or ".", name)
    try:
        shard.write(data)
        shard.commit()
    except BaseException:
        shard.abort()
        raise
