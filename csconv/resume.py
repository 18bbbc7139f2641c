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
import fcntl
import hashlib
import json
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict

from . import __version__
from .core.errors import CsconvError
from .output import DIGESTS, file_digests, write_atomically


class Interrupted(BaseException):
    """Raised in the main process by SIGINT / SIGTERM while a conversion runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class RunInterrupted(BaseException):
    """A conversion stopped by a signal, after cleaning up. The CLI exits 128 + signum."""

    def __init__(self, signum: int, completed: int, total: int, output_dir: str):
        super().__init__(signum, completed, total, output_dir)
        self.signum, self.completed, self.total, self.output_dir = signum, completed, total, output_dir

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return (
            f"interrupted by {name}: {self.completed} of {self.total} shards complete in {self.output_dir} "
            "(kept for --resume), temporary files removed"
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
    write_atomically(os.path.join(output_dir, record_name(entry["name"])), data)


def read_record(output_dir: str, shard_name: str) -> dict | None:
    """The completion record of a shard, or None when there is none or it is unreadable."""
    try:
        with open(os.path.join(output_dir, record_name(shard_name)), "rb") as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and entry.get("name") == shard_name else None


def remove_record(output_dir: str, shard_name: str) -> None:
    try:
        os.unlink(os.path.join(output_dir, record_name(shard_name)))
    except FileNotFoundError:
        pass


def proves_complete(output_dir: str, entry: dict | None, expected_fingerprint: str) -> bool:
    """True when `entry` describes this very shard and the file on disk is exactly it."""
    if not entry or entry.get("fingerprint") != expected_fingerprint or entry.get("skipped"):
        # A shard that skipped bad frames (--keep_going) is always redone: the input may
        # have been fixed since.
        return False
    path = os.path.join(output_dir, entry["name"])
    try:
        if not os.path.isfile(path) or os.path.getsize(path) != entry["bytes"]:
            return False
        recorded = {name: entry[name] for name in DIGESTS if name in entry}
        return bool(recorded) and file_digests(path, recorded) == recorded
    except (OSError, KeyError, TypeError):
        return False


@contextmanager
def output_lock(output_dir: str):
    """An exclusive flock on the output folder itself for the whole run.

    Worker processes inherit the descriptor, so the folder stays locked while any of
    them is alive, even if the main process was killed.
    """
    fd = os.open(output_dir, os.O_RDONLY)
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise CsconvError(f"{output_dir}: another csconv run is writing to this folder") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
