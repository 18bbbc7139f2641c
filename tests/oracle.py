"""An independent, deliberately plain oracle for the records of the reference chain.

Given a Cityscapes root on which the cityscapesscripts prework has run
(`*_gtFine_labelTrainIds.png`, `gtFine/cityscapes_panoptic_<split>_trainId.json` and
its PNG folder), it computes what DeepLab2's Cityscapes build would write, shard by
shard, following the reference semantics in the most obvious way: one boolean mask per
segment, segments in JSON order, no lookup tables, no shortcuts.

It must stay independent of csconv: it imports nothing from the `csconv` package.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

NUM_SHARDS = 10
IGNORE = 255
DIVISOR = 1000
# trainIds of the Cityscapes classes DeepLab2 numbers instances of:
# person, rider, car, truck, bus, train, motorcycle, bicycle.
THING_TRAIN_IDS = (11, 12, 13, 14, 15, 16, 17, 18)
IMAGE_SUFFIX = "_leftImg8bit.png"


@dataclass
class Record:
    image: bytes
    filename: bytes
    format: bytes
    height: int
    width: int
    channels: int
    label: bytes | None  # raw little-endian int32 bytes, or PNG bytes; None on test
    label_format: bytes | None


def image_files(root: str, split: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "leftImg8bit", split, "*", "*" + IMAGE_SUFFIX)))


def image_record_fields(path: str) -> tuple[bytes, int, int]:
    with open(path, "rb") as f:
        data = f.read()
    image = Image.open(io.BytesIO(data))
    if image.mode != "RGB":
        image = image.convert("RGB")
        out = io.BytesIO()
        image.save(out, format="png")
        data = out.getvalue()
    width, height = image.size
    return data, height, width


def read_segments(root: str, split: str) -> dict[str, tuple[str, list]]:
    path = os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}_trainId.json")
    with open(path) as f:
        doc = json.load(f)
    out = {}
    for annotation in doc["annotations"]:
        assert annotation["image_id"] not in out, annotation["image_id"]
        out[annotation["image_id"]] = (annotation["file_name"], annotation["segments_info"])
    return out


def panoptic_label(png_path: str, segments: list, treat_crowd_as_ignore: bool) -> np.ndarray:
    image = Image.open(png_path)
    assert image.mode == "RGB", (png_path, image.mode)
    rgb = np.array(image, dtype=np.int64)
    ids = rgb[:, :, 0] + 256 * rgb[:, :, 1] + 65536 * rgb[:, :, 2]

    semantic = np.full(ids.shape, IGNORE, dtype=np.int64)
    instance = np.zeros(ids.shape, dtype=np.int64)
    count = {}
    for segment in segments:
        mask = ids == segment["id"]
        area = int(mask.sum())
        if area != segment["area"]:
            raise ValueError(f"{png_path}: segment {segment['id']} covers {area} pixels, JSON says {segment['area']}")
        category = segment["category_id"]
        semantic[mask] = category
        if category in THING_TRAIN_IDS:
            if segment["iscrowd"]:
                if treat_crowd_as_ignore:
                    semantic[mask] = IGNORE
                continue
            count[category] = count.get(category, 0) + 1
            if count[category] >= DIVISOR:
                raise ValueError(f"{png_path}: too many instances of class {category}")
            instance[mask] = count[category]
        elif segment["iscrowd"]:
            raise ValueError(f"{png_path}: stuff segment {segment['id']} marked crowd")
    return (semantic * DIVISOR + instance).astype(np.int32)


def split_records(root: str, split: str, create_panoptic_data: bool = True,
                  treat_crowd_as_ignore: bool = True) -> list[Record]:
    """The records of one split, in file order."""
    files = image_files(root, split)
    segments = read_segments(root, split) if (create_panoptic_data and split != "test") else None
    records = []
    for path in files:
        folder, name = os.path.split(path)
        city = os.path.basename(folder)
        stem = name[: -len(IMAGE_SUFFIX)]
        image, height, width = image_record_fields(path)
        label, label_format = None, None
        if split != "test":
            if create_panoptic_data:
                file_name, segs = segments[stem]
                png_path = os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}_trainId", file_name)
                array = panoptic_label(png_path, segs, treat_crowd_as_ignore)
                assert array.shape == (height, width)
                label, label_format = array.astype("<i4").tobytes(), b"raw"
            else:
                label_path = os.path.join(root, "gtFine", split, city, f"{stem}_gtFine_labelTrainIds.png")
                with open(label_path, "rb") as f:
                    label = f.read()
                assert Image.open(io.BytesIO(label)).size == (width, height)
                label_format = b"png"
        records.append(Record(image, stem.encode(), b"png", height, width, 3, label, label_format))
    return records


def shard_name(split: str, index: int) -> str:
    return "%s-%05d-of-%05d.tfrecord" % (split, index, NUM_SHARDS)


def split_shards(root: str, split: str, create_panoptic_data: bool = True,
                 treat_crowd_as_ignore: bool = True) -> dict[str, list[Record]]:
    """shard file name -> its records, for all 10 shards (some possibly empty)."""
    records = split_records(root, split, create_panoptic_data, treat_crowd_as_ignore)
    per_shard = int(math.ceil(len(records) / NUM_SHARDS))
    shards = {shard_name(split, k): [] for k in range(NUM_SHARDS)}
    for i, record in enumerate(records):
        shards[shard_name(split, i // per_shard)].append(record)
    return shards


def all_shards(root: str, create_panoptic_data: bool = True, treat_crowd_as_ignore: bool = True,
               splits=("train", "val", "test")) -> dict[str, list[Record]]:
    out = {}
    for split in splits:
        out.update(split_shards(root, split, create_panoptic_data, treat_crowd_as_ignore))
    return out
