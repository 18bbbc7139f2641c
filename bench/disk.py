"""Disk alone: how fast this disk takes a given number of bytes, with nothing else to do.

Usage: python bench/disk.py OUTPUT_DIR BYTES [STREAMS]

Writes BYTES of incompressible data into OUTPUT_DIR, split over STREAMS files written at
once (default 1; bench/run.py uses as many as csconv's largest worker count, since each
worker writes a shard of its own), each through bench/synced_file.py (8 MiB O_DIRECT
writes, the way csconv and the floor write), then fdatasync. bench/run.py compares
csconv's wall time with it to tell a disk-bound run from a CPU-bound one. A reference, not a strict bound: a converter may
still be a little faster in a run where the disk happens to be quicker.
"""

from __future__ import annotations

import os
import sys
import threading

from synced_file import SyncedFile  # bench/ is sys.path[0] when run as a script

BLOCK = 8 << 20


def write_stream(path: str, total: int, stream: int) -> None:
    block = bytearray(os.urandom(BLOCK))
    out = SyncedFile(path)
    written, count = 0, 0
    while written < total:
        # A distinct block every time: storage that deduplicates could skip repeats.
        block[:16] = stream.to_bytes(8, "little") + count.to_bytes(8, "little")
        length = min(BLOCK, total - written)
        out.write([memoryview(block)[:length]])
        written += length
        count += 1
    out.close()


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    folder, total = argv[0], int(argv[1])
    streams = int(argv[2]) if len(argv) == 3 else 1
    os.makedirs(folder, exist_ok=True)
    shares = [total // streams + (1 if i < total % streams else 0) for i in range(streams)]
    failures: list[BaseException] = []

    def run(index: int, share: int) -> None:
        try:
            write_stream(os.path.join(folder, f"stream{index}.bin"), share, index)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i, share)) for i, share in enumerate(shares)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        print(f"disk: {failures[0]!r}", file=sys.stderr)
        return 1
    print(f"disk: {total} bytes in {streams} stream(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
