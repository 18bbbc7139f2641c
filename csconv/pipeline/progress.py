"""Progress on stderr: a bar on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import functools
import sys
import time


class Progress:
    def __init__(self, total: int, enabled: bool = True, stream=None, every_seconds: float = 10.0):
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._every = every_seconds
        self._last_line = self.started
        self._bar = None
        self._uploading = 0  # shards converted, not yet in their bucket
        self.enabled = enabled
        if enabled and self.stream.isatty():
            self._bar = _bar_class()(total=total, unit="frame", file=self.stream, dynamic_ncols=True, smoothing=0.1)

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        self.tick()

    def uploading(self, shards: int) -> None:
        """How many converted shards wait for their upload: after the last frame, the
        run goes on until they are in the bucket, which the progress says."""
        if shards == self._uploading:
            return
        self._uploading = shards
        if self._bar is not None:
            self._bar.set_postfix_str(self._upload_note(), refresh=True)

    def tick(self) -> None:
        """A plain line if one is due (off a terminal)."""
        now = time.monotonic()
        if self._bar is None and self.enabled and now - self._last_line >= self._every:
            self._last_line = now
            elapsed = now - self.started
            rate = self.done / elapsed if elapsed else 0.0
            eta = (self.total - self.done) / rate if rate else float("inf")
            note = f"; {self._upload_note()}" if self._uploading else ""
            print(
                f"csconv: {self.done}/{self.total} frames ({100 * self.done / max(self.total, 1):.0f}%), "
                f"{rate:.1f} frames/s, ETA {eta:.0f} s{note}",
                file=self.stream,
                flush=True,
            )

    def _upload_note(self) -> str:
        if not self._uploading:
            return ""
        return f"{self._uploading} shard{'s' if self._uploading != 1 else ''} uploading"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


@functools.cache
def _bar_class():
    from tqdm import tqdm  # imported only when a bar is drawn

    class Bar(tqdm):
        # No monitor thread: the workers fork after the bar exists, and a thread running
        # at a fork can leave a lock held for ever in the child.
        monitor_interval = 0

    return Bar
