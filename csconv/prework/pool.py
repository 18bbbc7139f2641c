"""Frame tasks in worker processes, stopped by signals as conversion's shard workers are.

Tasks are handed out a few at a time, so that a stop cancels little and memory stays
flat; results come back to the main process, which alone writes the journal.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .. import workers as worker_pool
from ..workers import WorkerDied

# Tasks waiting in the pool's queue per worker: enough that no worker idles between two.
_QUEUED_PER_WORKER = 4
# How long the executor's thread may take to notice its killed workers.
_MANAGER_WAIT_SECONDS = 10.0


def run_tasks(function, tasks: list, workers: int, on_done, where: str) -> None:
    """`on_done(function(task))` for every task, in the order they finish. Must run inside
    workers.signals_raise_interrupted(); `where` names the output in the error raised
    when a worker process dies."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            on_done(function(task))
        return
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    executor = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=context, initializer=worker_pool.prepare_worker
    )
    processes = {}
    waiting = iter(tasks)
    pending = {}
    with worker_pool.signals_deferred():
        try:
            while True:
                while len(pending) < _QUEUED_PER_WORKER * workers:
                    task = next(waiting, None)
                    if task is None:
                        break
                    try:
                        pending[executor.submit(function, task)] = task
                    except BrokenProcessPool:
                        raise _died(where, processes) from None
                    # Kept to kill them: the executor offers no way to stop a running task.
                    processes.update(executor._processes or {})
                if not pending:
                    break
                worker_pool.raise_if_signalled()
                finished, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for future in finished:
                    del pending[future]
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        raise _died(where, processes) from None
                    on_done(result)
            manager = executor._executor_manager_thread
            executor.shutdown(wait=False)
            while manager is not None and manager.is_alive():
                worker_pool.raise_if_signalled()
                manager.join(0.1)
        except BaseException:
            worker_pool.kill_workers(processes)
            executor.shutdown(wait=False, cancel_futures=True)
            # Gone before the interpreter exits, whose hook for the executor would
            # otherwise race the thread closing its wake-up pipe.
            manager = executor._executor_manager_thread
            if manager is not None:
                manager.join(_MANAGER_WAIT_SECONDS)
            raise
    worker_pool.raise_if_signalled()


def _died(where: str, processes: dict) -> WorkerDied:
    # The pool terminates the other workers (SIGTERM) when one dies; the dead one's status
    # shows once the executor's thread has reaped it.
    deadline = time.monotonic() + 2.0
    while any(p.exitcode is None for p in processes.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    endings = sorted({p.exitcode for p in processes.values() if p.exitcode not in (None, 0, -signal.SIGTERM)})
    how = "; ".join(worker_pool.how_it_ended(code) for code in endings) or "cause unknown"
    return WorkerDied(f"{where}: a worker process died ({how})")
