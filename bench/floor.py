"""The floor: the least work any panoptic Cityscapes -> TFRecord conversion must do.

Usage: python bench/floor.py CITYSCAPES_ROOT OUTPUT_FILE

In one process, for every leftImg8bit frame (train, val, test):
  * read the image file and its PNG header (the image is stored as-is);
  * labelled frames only: read the 16-bit instanceIds PNG, decode it once with
    imagecodecs' libpng (csconv's fallback decoder; its own zlib-ng inflate + C unfilter
    took 2.4 ms against libpng's 11.8 ms per 2048x1024 frame, much of csconv's lead over
    this floor), and map it through a 65536-entry int32 table (table[ids]);
  * CRC32C the output bytes (TFRecord checksums every record, test frames included);
  * append image + label bytes to ONE output file with bench/synced_file.py: 8 MiB
    page-aligned blocks written with O_DIRECT, as csconv writes.

No TFRecord framing, no protobuf, no validation, no shards: anything a real converter
does beyond this is overhead, so bench/run.py compares csconv's CPU time against it.
Deliberately free of csconv imports, so a bug in csconv cannot make the floor look slow.
"""

from __future__ import annotations

import os
import struct
import sys

import crc32c
import numpy as np
import imagecodecs

from synced_file import SyncedFile  # bench/ is sys.path[0] when run as a script

SPLITS = ("train", "val", "test")
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
