"""Finding the frames of a Cityscapes root, in the order DeepLab2 writes them."""

from __future__ import annotations

import math
import os

from .errors import CsconvError
from .records import Frame

IMAGE_SUFFIX = "_leftImg8bit.png"
OFFICIAL_SPLIT_SIZES = {"train": 2975, "val": 500, "test": 1525}
SPLITS = ("train", "val", "test")


def check_root(root: str) -> None:
    if not os.path.isdir(root):
        raise CsconvError(f"{root}: Cityscapes root does not exist or is not a folder")
    missing = [name for name in ("leftImg8bit", "gtFine") if not os.path.isdir(os.path.join(root, name))]
    if missing:
        raise CsconvError(
            f"{root}: not a Cityscapes root, missing {' and '.join(missing)}/ "
            "(expected leftImg8bit/<split>/<city>/ and gtFine/<split>/<city>/)"
        )


def find_frames(root: str, split: str) -> list[Frame]:
    """Every leftImg8bit/<split>/*/*_leftImg8bit.png, sorted by full path string.

    Listed by hand rather than with glob so that names starting with a dot match,
    as they do in TensorFlow's glob, which the reference uses.
    """
    split_dir = os.path.join(root, "leftImg8bit", split)
    if not os.path.isdir(split_dir):
        raise CsconvError(f"{split_dir}: split folder missing")
    found = []
    for city in os.listdir(split_dir):
        city_dir = os.path.join(split_dir, city)
        if not os.path.isdir(city_dir):
            continue
        for name in os.listdir(city_dir):
            if name.endswith(IMAGE_SUFFIX):
                path = os.path.join(city_dir, name)
                found.append((path, city, name[: -len(IMAGE_SUFFIX)]))
    found.sort()
    return [Frame(root=root, split=split, city=city, name=stem, image_path=path) for path, city, stem in found]


def shard_bounds(count: int, num_shards: int) -> list[tuple[int, int]]:
    """[start, end) of each shard: DeepLab2 puts record i in shard i // ceil(n / shards)."""
    per_shard = math.ceil(count / num_shards)
    return [(min(k * per_shard, count), min((k + 1) * per_shard, count)) for k in range(num_shards)]
