"""The disk ceiling: how fast this disk takes a given number of bytes, with nothing else to do.

Usage: python bench/disk.py OUTPUT_FILE BYTES

Writes BYTES of incompressible data to one file in 8 MiB O_DIRECT writes (the way csconv
and the floor write), then fdatasync. No converter writing the same bytes to the same disk
can finish sooner, so bench/run.py compares csconv's wall time with it to tell a
disk-bound run from a CPU-bound one.
"""

from __future__ import annotations

import mmap
import os
import sys

BLOCK = 8 << 20


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    path, total = argv[0], int(argv[1])
    block = mmap.mmap(-1, BLOCK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    # Random bytes: a virtual disk may store zeros without writing them.
    block[:] = os.urandom(BLOCK)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(path, flags | os.O_DIRECT, 0o644)
    except (AttributeError, OSError):
        fd = os.open(path, flags, 0o644)
    written = 0
    while written < total:
        written += os.pwrite(fd, memoryview(block)[: min(BLOCK, -(-(total - written) // 4096) * 4096)], written)
    os.ftruncate(fd, total)
    os.fdatasync(fd)
    os.close(fd)
    print(f"disk: {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
