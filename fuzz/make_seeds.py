"""Write each harness's seed corpus to fuzz/corpus/<harness>/ from the synthetic generator.

Generated, not committed: `python fuzz/make_seeds.py` before a run (run_all.sh does).
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

from csconv.synthetic import generate_dataset

HERE = Path(__file__).resolve().parent


def main(target: Path = HERE / "corpus") -> None:
    import numpy as np
    from PIL import Image


    root = Path(tempfile.mkdtemp(prefix="csconv-seeds-"))
    generate_dataset(root, {"train": 2}, width=32, height=16, seed=0, image_modes={1: "L"})
    images = sorted((root / "leftImg8bit").rglob("*.png"))
    labels = sorted((root / "gtFine").rglob("*_instanceIds.png"))
    polygons = sorted((root / "gtFine").rglob("*_polygons.json"))

    def write(harness: str, name: str, data: bytes) -> None:
        folder = target / harness
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)

    # First byte: how the harness reads the rest (common.png_input): 0 as is, 1 CRCs fixed,
    # 2 structured; for the label decoder, 0x80 and up also picks the C unfilter.
    for i, image in enumerate(images):
        for mode in (0, 1):
            write("png", f"image{i}_{mode}", bytes([mode]) + image.read_bytes())
    write("png", "structured", bytes([2, 2]) + bytes(range(256)) * 8)
    for i, label in enumerate(labels):
        for mode in (0, 1, 0x80, 0x81):
            write("label16", f"label{i}_{mode}", bytes([mode]) + label.read_bytes())
    write("label16", "structured", bytes([0x82]) + bytes(range(256)) * 8)
    out = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(out, format="png")
    write("label16", "interlace_free_gray16", b"\x80" + out.getvalue())
    for i, path in enumerate(polygons):
        write("polygons", f"polygons{i}", path.read_bytes())

    ids = np.zeros((4, 8, 3), dtype=np.uint8)
    ids[:, 4:, 0] = 7
    out = io.BytesIO()
    Image.fromarray(ids, "RGB").save(out, format="png")
    doc = {"annotations": [{"image_id": "a", "file_name": "a.png", "segments_info": [
        {"id": 0, "category_id": 0, "area": 16, "iscrowd": 0},
        {"id": 7, "category_id": 13, "area": 16, "iscrowd": 0},
    ]}]}
    write("prepared", "two_segments", json.dumps(doc).encode() + b"\n--png--\n" + out.getvalue())

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in (labels[0], polygons[0]):
            z.write(path, path.relative_to(root).as_posix())
    write("zip", "gtfine", archive.getvalue())
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as z:
        z.write(polygons[0], polygons[0].relative_to(root).as_posix())
    write("zip", "stored", stored.getvalue())

    shard_seeds(target, write)


# Harnesses whose first byte says how to read the rest (0: as is, 1: checksums made right).
MODE_BYTE_HARNESSES = {"tfrecord", "webdataset"}


def shard_seeds(target: Path, write) -> None:
    """Shards of every sink, panoptic and semantic, converted from a tiny synthetic set
    (two labelled frames and one test frame, 16x8)."""
    from csconv import convert
    from csconv.pipeline.manifest import MANIFEST_NAME

    root = Path(tempfile.mkdtemp(prefix="csconv-seeds-shards-"))
    generate_dataset(root / "cityscapes", {"train": 2, "test": 1}, width=16, height=8, seed=1)
    for sink in ("tfrecord", "parquet", "webdataset", "arrayrecord"):
        for task, panoptic in (("panoptic", True), ("semantic", False)):
            out = root / f"{sink}-{task}"
            with warnings.catch_warnings():  # the tiny splits' sizes are not the official ones, on purpose
                warnings.simplefilter("ignore")
                convert(root / "cityscapes", out, sink=sink, create_panoptic_data=panoptic, num_shards=1, workers=1)
            for shard in sorted(out.iterdir()):
                if shard.name == MANIFEST_NAME or shard.name.startswith("."):
                    continue
                if sink in MODE_BYTE_HARNESSES:
                    for mode in (0, 1):
                        write(sink, f"{task}-{shard.name}-{mode}", bytes([mode]) + shard.read_bytes())
                else:
                    write(sink, f"{task}-{shard.name}", shard.read_bytes())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus")
