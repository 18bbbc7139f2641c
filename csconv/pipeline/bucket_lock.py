"""The lock on an output folder in a bucket: an object only one run can create.

A store has no flock, but S3 (If-None-Match: *) and GCS (ifGenerationMatch=0) create an
object only if none is there, which is what a lock needs. The object `.csconv.lock`
holds who took it (host, process id) and when it was last renewed; a run renews it
every RENEW_SECONDS while it writes and removes it when it ends.

Unlike a flock, the object outlives a killed run. A lock is taken over when it is
provably or probably abandoned: its process is gone on this very host, or it has not
been renewed for EXPIRY_SECONDS (a run on another machine, killed). Two runs taking
over the same abandoned lock still race through the exclusive create, so one wins.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import warnings
from contextlib import contextmanager

from .. import storage
from ..core.errors import CsconvError
from ..storage.local import process_exists

LOCK_NAME = ".csconv.lock"
RENEW_SECONDS = 30.0
# Renewals are written by the holder's clock and judged by another's: the margin covers
# missed renewals and clocks some seconds apart.
EXPIRY_SECONDS = 120.0


class BucketLockWarning(UserWarning):
    pass


class _Holder:
    def __init__(self, path: str):
        self.path = path
        self.identity = {"host": socket.gethostname(), "pid": os.getpid(), "token": os.urandom(8).hex()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self) -> bytes:
        return json.dumps({**self.identity, "renewed": time.time()}, sort_keys=True).encode()

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew, name="csconv-lock", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                if self._still_ours():
                    storage.write_atomically(self.path, self.record())
            except CsconvError:
                pass  # the store is unreachable: the run's own writes will say so

    def _still_ours(self) -> bool:
        held = _read(self.path)
        return held is not None and held.get("token") == self.identity["token"]

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        try:
            if self._still_ours():
                storage.remove(self.path)
        except CsconvError:
            pass  # left behind, it expires; a run on this host sees its process gone


@contextmanager
def bucket_lock(output_dir: str, wait_seconds: float):
    """Hold the output folder's lock object for the block; wait up to `wait_seconds` for
    another run's; a CsconvError naming the holder when it stays taken."""
    holder = _Holder(storage.join(output_dir, LOCK_NAME))
    deadline = time.monotonic() + wait_seconds
    while True:
        created = storage.create_exclusively(holder.path, holder.record())
        if created is None:  # this filesystem cannot create exclusively
            warnings.warn(
                f"{output_dir}: this store cannot create an object exclusively, so the folder is not locked; "
                "make sure no other csconv run writes to it",
                BucketLockWarning,
            )
            yield
            return
        if created:
            break
        held = _read(holder.path)
        if held is None or _abandoned(held):
            _take_over(holder.path, held)
            continue
        if time.monotonic() >= deadline:
            raise CsconvError(
                f"{output_dir}: another csconv run is writing to this folder (process {held.get('pid')} on "
                f"{held.get('host')}, its lock {holder.path} renewed {time.time() - _renewed(held):.0f} s ago); "
                f"a lock not renewed for {EXPIRY_SECONDS:.0f} s is taken over"
            )
        time.sleep(0.5)
    holder.start_renewing()
    try:
        yield
    finally:
        holder.release()


def _read(path: str) -> dict | None:
    try:
        held = json.loads(storage.read_bytes(path))
    except FileNotFoundError:
        return None
    except ValueError:
        return {}  # damaged, or being replaced: judged by its age alone, which is unknown
    return held if isinstance(held, dict) else {}


def _renewed(held: dict) -> float:
    renewed = held.get("renewed")
    return float(renewed) if isinstance(renewed, (int, float)) else time.time()


def _abandoned(held: dict) -> bool:
    if held.get("host") == socket.gethostname() and isinstance(held.get("pid"), int):
        return not process_exists(held["pid"]) or held["pid"] == os.getpid()
    return time.time() - _renewed(held) > EXPIRY_SECONDS


def _take_over(path: str, held: dict | None) -> None:
    """Remove an abandoned lock, unless it changed since it was read (another run took it)."""
    if held is not None and _read(path) != held:
        return
    storage.remove(path)

