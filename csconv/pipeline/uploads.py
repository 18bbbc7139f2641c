"""Publishing shards staged for a bucket, from the main process, while the workers go on.

A worker writing a shard for a bucket stages it on local disk and returns its result
at once (storage.StagedShard); here the main process, which otherwise only waits for
results, uploads it on a background thread and then writes its completion record
(shards.publish), so a worker's next shard is converted while the last one uploads.
Uploading in the worker instead made it wait for each upload: 10.0 s for 64 frames
against the test S3 server where conversion alone took 3.2 s and the upload alone 5.6 s.

The shards staged but not yet published are bounded (room()): the caller starts no
new shard while they are at the bound, so a slow store costs local disk for a few
shards, not for the whole output. A failed upload stops the run (check()); after a
stop, abandon() discards what is staged, and an upload under way finishes or is cut off
with the process, published whole or not at all.
"""

from __future__ import annotations

import threading
from collections import deque

from .shards import ShardResult, publish

# Two uploads at a time keep a store's connection busy while one starts or finishes;
# s3fs's own `put` of a folder overlapped its files likewise.
UPLOAD_THREADS = 2


class Uploads:
    def __init__(self, output_dir: str, done: list, most_staged: int = 4, threads: int = UPLOAD_THREADS):
        self._output_dir = output_dir
        self.done = done
        self._most_staged = most_staged
        self._threads_wanted = threads
        self._threads: list[threading.Thread] = []
        self._queue: deque[ShardResult] = deque()
        self._changed = threading.Condition()
        self._staged = 0  # added, not yet published or discarded
        self._error: BaseException | None = None
        self._stopped = False

    def add(self, result: ShardResult) -> None:
        """A finished shard's result: published already (local output), or staged, to upload."""
        if result.staged is None:
            self.done.append(result)
            return
        with self._changed:
            self._staged += 1
            self._queue.append(result)
            self._changed.notify_all()
        while len(self._threads) < self._threads_wanted:
            thread = threading.Thread(target=self._work, name="csconv-upload", daemon=True)
            thread.start()
            self._threads.append(thread)

    def room(self) -> bool:
        """Whether another shard may be started without staging more than the bound."""
        return self._staged < self._most_staged

    def check(self) -> None:
        """Raise the first upload's error, if one failed."""
        if self._error is not None:
            raise self._error

    def wait(self, seconds: float) -> None:
        """Until an upload ends or `seconds` pass."""
        with self._changed:
            if self._staged:
                self._changed.wait(seconds)
        self.check()

    @property
    def staged(self) -> int:
        """Shards staged and not yet published."""
        return self._staged

    @property
    def busy(self) -> bool:
        """Whether a shard is staged and not yet published."""
        return self._staged > 0

    def finish(self) -> None:
        """After every upload: raise a failed one's error; end the threads."""
        self.check()
        self._stop_threads()

    def abandon(self) -> None:
        """Stop: discard the staged shards not yet uploading; leave an upload under way."""
        with self._changed:
            self._stopped = True
            for result in self._queue:
                result.staged.discard()
                self._staged -= 1
            self._queue.clear()
        self._stop_threads()

    def _stop_threads(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._stopped:
                    self._changed.wait()
                if not self._queue:
                    return
                result = self._queue.popleft()
                if self._stopped or self._error is not None:
                    result.staged.discard()
                    self._staged -= 1
                    self._changed.notify_all()
                    continue
            published, error = None, None
            try:
                published = publish(result, self._output_dir)
            except BaseException as raised:  # noqa: BLE001 - handed to the main thread by check()
                error = raised
            with self._changed:
                if error is not None and self._error is None:
                    self._error = error
                elif published is not None and not self._stopped:
                    self.done.append(published)
                self._staged -= 1
                self._changed.notify_all()
