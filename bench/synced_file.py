"""Append-only output for the bench scripts, written the way csconv writes its shards.

Bytes are copied into an 8 MiB page-aligned block written with O_DIRECT when full, or,
where the file system has no O_DIRECT, through the page cache with fdatasync +
POSIX_FADV_DONTNEED every 32 MiB so the page cache does not grow. Free of csconv
imports, so a bug in csconv cannot slow the floor or the disk reference.
"""

from __future__ import annotations

import mmap
import os

SYNC_EVERY = 32 << 20


class SyncedFile:
    """Append-only output that never lets the page cache grow."""

    BLOCK = 8 << 20
    ALIGN = 4096

    def __init__(self, path: str):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            self.fd = os.open(path, flags | os.O_DIRECT, 0o644)
            self.direct = True
        except (AttributeError, OSError):
            self.fd = os.open(path, flags, 0o644)
            self.direct = False
        self.block = mmap.mmap(-1, self.BLOCK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.fill = self.size = self.unsynced = 0

    def write(self, parts: list) -> None:
        for part in parts:
            view = memoryview(part).cast("B")
            while view.nbytes:
                taken = min(view.nbytes, self.BLOCK - self.fill)
                self.block[self.fill : self.fill + taken] = view[:taken]
                self.fill += taken
                view = view[taken:]
                if self.fill == self.BLOCK:
                    self.write_block()

    def write_block(self) -> None:
        length = self.fill
        if self.direct:
            length = -(-length // self.ALIGN) * self.ALIGN
        data = memoryview(self.block)[:length]
        while data.nbytes:
            written = os.pwrite(self.fd, data, self.size)
            self.size += written
            data = data[written:]
        self.size -= length - self.fill  # the padding of a partial last block
        self.unsynced += self.fill
        self.fill = 0
        if not self.direct and self.unsynced >= SYNC_EVERY:
            self.drop_cache()

    def drop_cache(self) -> None:
        os.fdatasync(self.fd)
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        self.unsynced = 0

    def close(self) -> None:
        if self.fill:
            self.write_block()
        os.ftruncate(self.fd, self.size)
        self.drop_cache()
        os.close(self.fd)
