"""Running shard jobs, in this process or in worker processes, and stopping them on signals.

SIGINT / SIGTERM stop the workers at once; the caller removes temporary files and
reports what was completed (resume.RunInterrupted).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from contextlib import contextmanager

from .allocator import keep_frame_buffers
from .progress import Progress
from .resume import Interrupted
from .shards import ShardJob, ShardResult, write_shard


def _init_worker(queue) -> None:
    # The parent decides how to stop: workers ignore Ctrl-C (sent to the whole process
    # group) and die at once on the SIGTERM of pool.terminate(); the parent then removes
    # their temporary files.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ignore_file_size_signal()
    _die_with_parent()
    global _progress_queue
    _progress_queue = queue

_progress_queue = None


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the main process dies, so that no orphan keeps writing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def ignore_file_size_signal() -> None:
    # Without this, hitting RLIMIT_FSIZE kills the process instead of raising EFBIG.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _worker_write_shard(job: ShardJob) -> ShardResult:
    return write_shard(job, report=_progress_queue.put)


def run(jobs: list[ShardJob], workers: int, progress: Progress, done: list | None = None) -> list[ShardResult]:
    """Write every job's shard; results sorted by (split, index). `done` collects them as they finish."""
    ignore_file_size_signal()
    keep_frame_buffers()  # before the workers fork, so they inherit it
    done = [] if done is None else done
    jobs_by_size = sorted(jobs, key=lambda job: -len(job.frames))  # big shards first keeps both cores busy
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs_by_size:
            done.append(write_shard(job, report=progress.advance))
    elif jobs:
        _run_parallel(jobs_by_size, workers, progress, done)
    return sorted(done, key=lambda r: (r.split, r.index))


def _run_parallel(jobs: list[ShardJob], workers: int, progress: Progress, results: list) -> list[ShardResult]:
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    queue = context.SimpleQueue()
    # Raising from a signal handler in the middle of the pool's own locking can leave
    # it unable to terminate; here a signal only sets a flag, acted on between polls.
    _signal_state.deferred = True
    try:
        pool = context.Pool(processes=min(workers, len(jobs)), initializer=_init_worker, initargs=(queue,))
        try:
            pending = pool.imap_unordered(_worker_write_shard, jobs, chunksize=1)
            remaining = len(jobs)
            while remaining:
                _raise_if_signalled()
                try:
                    result = pending.next(timeout=0.1)
                except multiprocessing.TimeoutError:
                    result = None
                while not queue.empty():
                    progress.advance(queue.get())
                if result is not None:
                    results.append(result)
                    remaining -= 1
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
            while not queue.empty():
                progress.advance(queue.get())
    finally:
        _signal_state.deferred = False
    _raise_if_signalled()
    return results


class _SignalState:
    deferred = False  # True: a signal is recorded, and raised at the next safe point
    received: int | None = None


_signal_state = _SignalState()


def take_pending_signal() -> int | None:
    """The signal recorded but not yet raised, if any; clears it."""
    signum, _signal_state.received = _signal_state.received, None
    return signum


def _raise_if_signalled() -> None:
    if _signal_state.received is not None:
        signum, _signal_state.received = _signal_state.received, None
        raise Interrupted(signum)


@contextmanager
def signals_raise_interrupted():
    """SIGINT and SIGTERM raise Interrupted in the main thread while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if _signal_state.deferred:
            _signal_state.received = signum
        else:
            raise Interrupted(signum)

    _signal_state.received = None
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
        _raise_if_signalled()
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def signals_ignored():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
