"""What makes an interrupted run resumable: per-shard completion records and a lock.

The manifest is written only when a run ends, so each shard, once committed under its
final name, is followed by a small hidden completion record `.<shard>.done` (JSON,
written atomically): its records, bytes, checksums (CRC32C; SHA-256 too with --sha256)
and a fingerprint of what it was made from (csconv version, sink, options, shard layout
and the shard's input frame list). `--resume` keeps a shard only when such a record (or
the manifest of a finished run) exists, its fingerprint equals the planned shard's, and
the file on disk has the recorded size and checksums. The final manifest absorbs the records, which are then
removed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict

from .. import __version__, storage
from ..core.errors import CsconvError
from ..storage import DIGESTS
from ..storage.local import process_exists
from .bucket_lock import LOCK_NAME, bucket_lock

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:
    msvcrt = None


class Interrupted(BaseException):
    """Raised in the main process by SIGINT / SIGTERM while a conversion runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class RunInterrupted(BaseException):
    """A conversion stopped by a signal, after cleaning up. The CLI exits 128 + signum."""

    def __init__(self, signum: int, completed: int, total: int, output_dir: str, unit: str = "shards"):
        super().__init__(signum, completed, total, output_dir, unit)
        self.signum, self.completed, self.total, self.output_dir = signum, completed, total, output_dir
        self.unit = unit  # what completed counts: shards, or the prework's frames

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        cleaned = "unfinished uploads discarded" if storage.is_url(self.output_dir) else "temporary files removed"
        return (
            f"interrupted by {name}: {self.completed} of {self.total} {self.unit} complete in {self.output_dir} "
            f"(kept for --resume), {cleaned}"
        )


RECORD_SUFFIX = ".done"
LOCK_WAIT_SECONDS = 3.0


def record_name(shard_name: str) -> str:
    return f".{shard_name}{RECORD_SUFFIX}"


def options_dict(options) -> dict:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(options).items()}


def fingerprint(sink_name: str, options, split: str, index: int, num_shards: int, frames, sha256: bool = False) -> str:
    """SHA-256 of everything that decides a shard's bytes, except the input files' contents."""
    doc = {
        "csconv_version": __version__,
        "sink": sink_name,
        "options": options_dict(options),
        "split": split,
        "index": index,
        "num_shards": num_shards,
        "frames": [f"{frame.city}/{frame.name}" for frame in frames],
        "sha256": sha256,  # a manifest asked to carry SHA-256 must have it for every shard
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def write_record(output_dir: str, entry: dict) -> None:
    """Record one committed shard (entry: name, split, index, records, bytes, digests, fingerprint, skipped)."""
    data = (json.dumps(entry, sort_keys=True) + "\n").encode()
    storage.write_atomically(storage.join(output_dir, record_name(entry["name"])), data)


def read_record(output_dir: str, shard_name: str) -> dict | None:
    """The completion record of a shard, or None when there is none or it is unreadable."""
    try:
        entry = json.loads(storage.read_bytes(storage.join(output_dir, record_name(shard_name))))
    except (OSError, ValueError, storage.StorageError):
        return None
    return entry if isinstance(entry, dict) and entry.get("name") == shard_name else None


def remove_records(output_dir: str, shard_names) -> None:
    storage.remove_all([storage.join(output_dir, record_name(name)) for name in shard_names])


def proves_complete(output_dir: str, entry: dict | None, expected_fingerprint: str) -> bool:
    """True when `entry` describes this very shard and the file on disk is exactly it."""
    if not entry or entry.get("fingerprint") != expected_fingerprint or entry.get("skipped"):
        # A shard that skipped bad frames (--keep_going) is always redone: the input may
        # have been fixed since.
        return False
    try:
        path = storage.join(output_dir, entry["name"])
        if storage.file_size(path) != entry["bytes"]:
            return False
        recorded = {name: entry[name] for name in DIGESTS if name in entry}
        return bool(recorded) and storage.file_digests(path, recorded) == recorded
    except (OSError, KeyError, TypeError, storage.StorageError):
        return False


# Where the output folder cannot be flocked (Windows), the hidden file LOCK_NAME in it is
# locked instead; it is removed when the run ends.
# flock errors that mean "this file system cannot lock", not "someone else holds the lock":
# NFS gives ENOLCK without a lock daemon, and EBADF where flock is emulated by a write
# lock, which a read-only descriptor cannot take.
_CANNOT_LOCK = {errno.ENOLCK, errno.EBADF, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


class LockWarning(UserWarning):
    pass


@contextmanager
def output_lock(output_dir: str):
    """An exclusive lock on the output folder for the whole run.

    POSIX: a flock on the folder itself. Forked workers inherit the descriptor, so the
    folder stays locked while any of them is alive, even if the main process was killed.
    Where the file system cannot lock (NFS without a lock daemon): a warning, no lock.
    Windows: msvcrt.locking on LOCK_NAME in the folder. Elsewhere: LOCK_NAME, created
    exclusively and holding the process id. In a bucket: the object LOCK_NAME, created
    exclusively and renewed while the run writes (bucket_lock.py).
    """
    if storage.is_url(output_dir):
        with bucket_lock(output_dir, LOCK_WAIT_SECONDS):
            yield
        return
    if fcntl is not None:
        with _flock(output_dir):
            yield
        return
    path = os.path.join(output_dir, LOCK_NAME)
    with (_locked_file if msvcrt is not None else _exclusive_file)(output_dir, path):
        yield


def _wait_for(output_dir: str, try_lock) -> None:
    """Calls try_lock() until it returns True, for up to LOCK_WAIT_SECONDS."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while not try_lock():
        if time.monotonic() >= deadline:
            raise CsconvError(f"{output_dir}: another csconv run is writing to this folder")
        time.sleep(0.05)


@contextmanager
def _flock(output_dir: str):
    fd = os.open(output_dir, os.O_RDONLY)

    def try_lock() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            if error.errno not in _CANNOT_LOCK:
                raise
            warnings.warn(
                f"{output_dir}: cannot lock the output folder ({error.strerror}); "
                "make sure no other csconv run writes to it",
                LockWarning,
            )
        return True

    try:
        _wait_for(output_dir, try_lock)
        yield
    finally:
        os.close(fd)


@contextmanager
def _locked_file(output_dir: str, path: str):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)

    def try_lock() -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EDEADLOCK):
                raise
            return False
        return True

    try:
        _wait_for(output_dir, try_lock)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        os.close(fd)
        _remove(path)


@contextmanager
def _exclusive_file(output_dir: str, path: str):
    def try_lock() -> bool:
        if storage.create_exclusively(path, f"{os.getpid()}\n".encode()):
            return True
        if not _holder_alive(path):
            # Left by a killed run. Two runs finding the same stale file at the same
            # instant could both go on; without flock nothing closes that window.
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return False

    _wait_for(output_dir, try_lock)
    try:
        yield
    finally:
        _remove(path)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        # Windows refuses while another run has the file open, waiting for the lock;
        # that run removes it when it ends.
        pass


def _holder_alive(path: str) -> bool:
    """Whether the process named in an exclusive lock file still runs; True when unsure."""
    try:
        with open(path, "rb") as f:
            pid = int(f.read().strip() or b"0")
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    if pid <= 0:
        # Empty: caught between its creation and the write of the process id.
        return True
    if pid == os.getpid():  # a killed run's id, since reused by this process
        return False
    return process_exists(pid)
