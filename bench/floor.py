"""The floor: the least work any panoptic Cityscapes -> TFRecord conversion must do.

Usage: python bench/floor.py CITYSCAPES_ROOT OUTPUT_FILE

In one process, for every leftImg8bit frame (train, val, test):
  * read the image file and its PNG header (the image is stored as-is);
  * labelled frames only: read the 16-bit instanceIds PNG, decode it once with the
    fastest decoder at hand (imagecodecs' libpng, the one csconv uses: a slower
    decoder here would flatter csconv), map it through a 65536-entry int32 table (table[ids]);
  * CRC32C the output bytes (TFRecord checksums every record, test frames included);
  * append image + label bytes to ONE output file the cheapest way known here: copied
    into an 8 MiB page-aligned block written with O_DIRECT when full (as csconv does),
    or, where the file system has no O_DIRECT, through the page cache with fdatasync +
    POSIX_FADV_DONTNEED every 32 MiB so the page cache does not grow.

No TFRecord framing, no protobuf, no validation, no shards: anything a real converter
does beyond this is overhead, so bench/run.py compares csconv's CPU time against it.
Deliberately free of csconv imports, so a bug in csconv cannot make the floor look slow.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys

import crc32c
import numpy as np
import imagecodecs

SPLITS = ("train", "val", "test")
SYNC_EVERY = 32 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def find_images(root: str, split: str) -> list[str]:
    split_dir = os.path.join(root, "leftImg8bit", split)
    if not os.path.isdir(split_dir):
        return []
    paths = []
    for city in sorted(os.listdir(split_dir)):
        city_dir = os.path.join(split_dir, city)
        paths += [os.path.join(city_dir, n) for n in sorted(os.listdir(city_dir)) if n.endswith("_leftImg8bit.png")]
    return paths


def instance_ids_path(root: str, split: str, image_path: str) -> str:
    city = os.path.basename(os.path.dirname(image_path))
    stem = os.path.basename(image_path)[: -len("_leftImg8bit.png")]
    return os.path.join(root, "gtFine", split, city, f"{stem}_gtFine_instanceIds.png")


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk: the image is stored, never decoded."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack_from(">II", data, 16)


def label_bytes(png_data: bytes, table: np.ndarray) -> memoryview:
    ids = imagecodecs.png_decode(png_data)
    return memoryview(table[ids]).cast("B")


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


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    root, output_path = argv
    # The content of the table does not change its cost; a real one maps each
    # instanceIds value to semantic * 1000 + instance.
    table = np.arange(1 << 16, dtype=np.int32)
    out = SyncedFile(output_path)
    frames = 0
    checksum = 0
    for split in SPLITS:
        for image_path in find_images(root, split):
            image = read_bytes(image_path)
            png_size(image)
            parts = [image]
            if split != "test":
                parts.append(label_bytes(read_bytes(instance_ids_path(root, split, image_path)), table))
            for part in parts:
                checksum ^= crc32c.crc32c(part)
            out.write(parts)
            frames += 1
    out.close()
    print(f"floor: {frames} frames, crc xor {checksum:08x}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
