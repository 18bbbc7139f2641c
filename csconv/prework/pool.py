"""Frame tasks in worker processes, stopped by signals as conversion's shard workers are.

Tasks are handed out a few at a time, so that a stop cancels little and memory stays
flat; results come back to the main process, which alone writes the journal.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from ..pipeline import workers as worker_pool
from ..pipeline.workers import WorkerDied

# Tasks waiting in the pool's queue per worker: enough that no worker idles between two.
_QUEUED_PER_WORKER = 4


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
                    worker_pool.track_workers(executor, processes)
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
            worker_pool.finish_executor(executor)
        except BaseException:
            worker_pool.abandon_executor(executor, processes)
            raise
    worker_pool.raise_if_signalled()


def _died(where: str, processes: dict) -> WorkerDied:
    # The one that died first is the one not ended by the pool's own SIGTERM.
    endings = sorted({code for code in worker_pool.exit_codes_after_break(processes).values()
                      if code not in (0, -signal.SIGTERM)})
    how = "; ".join(worker_pool.how_it_ended(code) for code in endings) or "cause unknown"
    return WorkerDied(f"{where}: a worker process died ({how})")
