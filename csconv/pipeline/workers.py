"""Running shard jobs, in this process or in worker processes, and stopping them on signals.

SIGINT / SIGTERM stop the workers at once; the caller removes temporary files and
reports what was completed (resume.RunInterrupted). A worker that dies without a result
(the out-of-memory killer, a stray kill -9) stops the run too, naming its shard.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import struct
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from .. import plugins, storage
from .allocator import keep_frame_buffers
from ..core.errors import CsconvError
from .progress import Progress
from .resume import Interrupted, RunInterrupted, read_record
from .shards import ShardJob, ShardResult, write_shard
from .uploads import Uploads


class WorkerDied(CsconvError):
    pass


def prepare_worker() -> None:
    """First thing in every worker process, of shards or of the prework's frames.

    The parent decides how to stop: workers ignore Ctrl-C (sent to the whole process
    group) and die at once on SIGTERM or SIGKILL; the parent then removes their
    temporary files. The file size limit is an error, not a signal, and a worker dies
    with the main process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ignore_file_size_signal()
    _die_with_parent()


def _init_worker(progress_writer, niceness: int) -> None:
    prepare_worker()
    global _progress_writer
    _progress_writer = progress_writer
    if niceness and hasattr(os, "nice"):
        os.nice(niceness)


# Workers writing for a bucket yield the CPU to the main process's uploads: the staged
# shards are bounded, so conversion waits for the uploads anyway, and an upload that
# waits for the CPU is the one thing that makes the whole run longer. Against the test
# S3 server on the same two cores, the uploads then ran back to back from the first
# staged shard to the last (bench/object_storage.py).
_STAGING_WORKER_NICENESS = 10

_progress_writer = None

# Worker to main process: (worker pid, job number, frames done); 0 frames announces the
# job. Each message goes out in one write of under PIPE_BUF bytes, which a pipe keeps
# whole: the workers share the pipe without a lock, so a worker killed mid-message can
# neither leave a lock held nor half a message for the main process to wait on.
_MESSAGE = struct.Struct("=iii")


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


def _worker_write_shard(number: int, job: ShardJob) -> ShardResult:
    pid, send = os.getpid(), _progress_writer.send_bytes
    send(_MESSAGE.pack(pid, number, 0))
    return write_shard(job, report=lambda count: send(_MESSAGE.pack(pid, number, count)))


def run(jobs: list[ShardJob], workers: int, progress: Progress, done: list | None = None) -> list[ShardResult]:
    """Write every job's shard; results sorted by (split, index). `done` collects them as
    they finish, for a bucket once uploaded (uploads.py)."""
    ignore_file_size_signal()
    keep_frame_buffers()  # before the workers fork, so they inherit it
    done = [] if done is None else done
    if not jobs:
        return done
    jobs_by_size = sorted(jobs, key=lambda job: -len(job.frames))  # big shards first keeps both cores busy
    if jobs[0].staging_area:
        # For a bucket the uploads set the pace and start with the first staged shard:
        # each worker begins with a small one (a 1-frame val shard of 64 frames is staged
        # in a tenth of the time of a 6-frame train shard), then the big ones go first.
        jobs_by_size = jobs_by_size[-max(workers, 1):][::-1] + jobs_by_size[: -max(workers, 1)]
    uploads = Uploads(jobs[0].output_dir, done, most_staged=2 * max(workers, 1))
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs_by_size:
                while not uploads.room():
                    _wait_for_uploads(uploads, progress)
                uploads.add(write_shard(job, report=progress.advance))
            while uploads.busy:
                _wait_for_uploads(uploads, progress)
        else:
            _run_parallel(jobs_by_size, workers, progress, uploads)
        uploads.finish()
    except BaseException:
        uploads.abandon()
        raise
    return sorted(done, key=lambda r: (r.split, r.index))


def _wait_for_uploads(uploads: Uploads, progress: Progress) -> None:
    uploads.wait(0.1)
    progress.uploading(uploads.staged)
    progress.tick()


# How long the main process waits for killed workers to be gone before it lets the
# caller remove their temporary files; SIGKILL is only delayed by I/O in progress.
_KILL_WAIT_SECONDS = 10.0


def _run_parallel(jobs: list[ShardJob], workers: int, progress: Progress, uploads: Uploads) -> None:
    context = multiprocessing.get_context(_start_method(jobs))
    reader, writer = context.Pipe(duplex=False)
    executor = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=context, initializer=_init_worker,
        initargs=(writer, _STAGING_WORKER_NICENESS if jobs[0].staging_area else 0),
    )
    processes: dict = {}
    writing: dict[int, int] = {}  # worker pid -> number of the job it announced last
    waiting = deque(enumerate(jobs))
    # Shards for a bucket are started only while few wait for their upload; every other
    # job is handed to the pool at once.
    most_running = workers + 1 if jobs[0].staging_area else len(jobs)
    try:
        with signals_deferred():
            try:
                pending = {}
                while waiting or pending or uploads.busy:
                    while waiting and len(pending) < most_running and uploads.room():
                        number, job = waiting.popleft()
                        try:
                            pending[executor.submit(_worker_write_shard, number, job)] = number
                        except BrokenProcessPool:  # a worker died already
                            _read_progress(reader, progress, writing)
                            raise _worker_died(jobs, processes, writing, uploads) from None
                        track_workers(executor, processes)
                    raise_if_signalled()
                    uploads.check()
                    if not pending:
                        _wait_for_uploads(uploads, progress)
                        continue
                    finished, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                    _read_progress(reader, progress, writing)
                    progress.uploading(uploads.staged)
                    error, broken = None, False
                    for future in finished:
                        del pending[future]
                        try:
                            uploads.add(future.result())
                        except BrokenProcessPool:
                            broken = True
                        except BaseException as raised:
                            error = error or raised
                    if error is not None:  # a shard's own error: a worker that died meanwhile is its consequence
                        raise error
                    if broken:
                        raise _worker_died(jobs, processes, writing, uploads)
                finish_executor(executor)
            except BaseException:
                abandon_executor(executor, processes)
                raise
    finally:
        _read_progress(reader, progress, writing)
        reader.close()
        writer.close()
    raise_if_signalled()


# -- process pools: shards here, the prework's frames in prework/pool.py -------------------


def track_workers(executor: ProcessPoolExecutor, processes: dict) -> None:
    """Add the executor's worker processes (pid -> Process) to `processes`, after a submit().

    Kept to kill them and to tell which one died: the executor offers no way to stop a
    running task. With fork the first submit() starts every worker, before the
    executor's thread (no thread may run at a fork); with spawn each may start one more.
    """
    processes.update(executor._processes or {})


def finish_executor(executor: ProcessPoolExecutor) -> None:
    """Shut down an executor whose work is done; the wait for its workers to exit is one a
    signal can still cut short (inside signals_deferred())."""
    manager = executor._executor_manager_thread
    executor.shutdown(wait=False)
    while manager is not None and manager.is_alive():
        raise_if_signalled()
        manager.join(0.1)


def abandon_executor(executor: ProcessPoolExecutor, processes: dict) -> None:
    """Stop an executor at once, on a signal or an error: kill its workers, cancel the rest."""
    kill_workers(processes)
    manager = executor._executor_manager_thread
    executor.shutdown(wait=False, cancel_futures=True)
    if manager is not None:
        # With the workers gone it ends at once; left running, it would race the
        # interpreter's exit, which wakes it up through a pipe it may be closing (EBADF).
        manager.join(_KILL_WAIT_SECONDS)


def exit_codes_after_break(processes: dict) -> dict[int, int]:
    """pid -> exit status of the workers of a broken pool that have ended.

    The executor fails the futures, then terminates the other workers with SIGTERM,
    which tells them apart from the one that died first. Exit statuses show once the
    executor's thread has reaped the processes (a poll racing it sees none yet).
    """
    deadline = time.monotonic() + 2.0
    while any(p.exitcode is None for p in processes.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return {pid: p.exitcode for pid, p in processes.items() if p.exitcode is not None}


def _start_method(jobs: list[ShardJob]) -> str:
    if not sys.platform.startswith("linux"):
        return "spawn"
    # A format library whose threads a forked child cannot inherit (ArrayRecord's, once
    # used in this process) gets freshly started workers instead.
    return "fork" if plugins.get_sink(jobs[0].sink_name).safe_to_fork() else "spawn"


def _read_progress(reader, progress: Progress, writing: dict[int, int]) -> None:
    while reader.poll():
        pid, number, frames = _MESSAGE.unpack(reader.recv_bytes())
        if frames:
            progress.advance(frames)
        else:
            writing[pid] = number


def _worker_died(jobs: list[ShardJob], processes: dict, writing: dict[int, int], uploads: Uploads) -> WorkerDied:
    """The error naming the shard whose worker died without a result."""
    results = uploads.done
    _recover_results(jobs, results)
    dead = exit_codes_after_break(processes)
    culprits = {pid: code for pid, code in dead.items() if code != -signal.SIGTERM} or dead
    finished = {(r.split, r.index) for r in results}
    for pid, code in sorted(culprits.items()):
        number = writing.get(pid)
        if number is not None and (jobs[number].split, jobs[number].index) not in finished:
            job = jobs[number]
            return WorkerDied(
                f"{storage.join(job.output_dir, job.shard_name)}: the worker process writing this shard died "
                f"({how_it_ended(code)}); its temporary file is removed"
            )
    how = "; ".join(how_it_ended(code) for code in culprits.values()) or "cause unknown"
    return WorkerDied(f"{jobs[0].output_dir}: a worker process died between shards ({how})")


def _recover_results(jobs: list[ShardJob], results: list) -> None:
    """Add the shards completed whose result was lost with the pool: a completion record,
    written atomically after the shard was renamed into place, says so."""
    finished = {(r.split, r.index) for r in results}
    for job in jobs:
        if (job.split, job.index) in finished:
            continue
        entry = read_record(job.output_dir, job.shard_name)
        if entry is not None and entry.get("fingerprint") == job.fingerprint:
            try:
                results.append(ShardResult.from_entry(entry))
            except (KeyError, TypeError):
                pass


def how_it_ended(exitcode: int) -> str:
    if exitcode >= 0:
        return f"exited with status {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    if -exitcode == getattr(signal, "SIGKILL", None):
        return f"killed by {name}; out of memory?"
    return f"killed by {name}"


def kill_workers(processes: dict) -> None:
    """SIGKILL every worker and wait, boundedly, until they are gone: only then may the
    caller remove their temporary files without one being written again."""
    for process in processes.values():
        try:
            process.kill()
        except (OSError, ValueError):  # already gone
            pass
    sentinels = [process.sentinel for process in processes.values()]
    deadline = time.monotonic() + _KILL_WAIT_SECONDS
    while sentinels and time.monotonic() < deadline:
        ready = multiprocessing.connection.wait(sentinels, timeout=max(0.0, deadline - time.monotonic()))
        sentinels = [s for s in sentinels if s not in ready]


class _SignalState:
    deferred = False  # True: a signal is recorded, and raised at the next safe point
    received: int | None = None


_signal_state = _SignalState()


def stopped_run(error: BaseException, completed: int, total: int, where: str, unit: str) -> BaseException | None:
    """After a stopped run has cleaned up: the RunInterrupted to raise in place of `error`
    when a signal stopped it, else None (re-raise `error`, which, when some of the run's
    `unit` were completed, gets the note that they are kept for --resume)."""
    signalled = take_pending_signal()
    if isinstance(error, (Interrupted, KeyboardInterrupt)) or signalled is not None:
        signum = error.signum if isinstance(error, Interrupted) else (signalled or signal.SIGINT)
        return RunInterrupted(signum, completed, total, where, unit)
    if isinstance(error, CsconvError) and completed:
        error.add_note(f"{completed} of {total} {unit} were completed and are kept for --resume")
    return None


def take_pending_signal() -> int | None:
    """The signal recorded but not yet raised, if any; clears it."""
    signum, _signal_state.received = _signal_state.received, None
    return signum


def raise_if_signalled() -> None:
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
        raise_if_signalled()
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def signals_deferred():
    """Inside signals_raise_interrupted(): while the block runs a signal is only recorded,
    and raise_if_signalled() raises it where stopping is safe: raised in the middle of a
    process pool's own bookkeeping it could leave the pool unable to stop."""
    _signal_state.deferred = True
    try:
        yield
    finally:
        _signal_state.deferred = False


def ignore_signals() -> None:
    """SIGINT and SIGTERM are ignored for the rest of the signals_raise_interrupted() block,
    which then puts the earlier handlers back."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


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
