"""Finding the frames of a Cityscapes input, in the order DeepLab2 writes them."""

from __future__ import annotations

import math

from .errors import CsconvError
from .records import Frame
from .samples import TEST_SPLIT
from .sources import FINE, Dataset, open_dataset

OFFICIAL_SPLIT_SIZES = {"train": 2975, "val": 500, "test": 1525, "train_extra": 19998}
SPLITS = FINE.splits  # what a conversion of fine annotations does by default; coarse: COARSE.splits


def parse_splits(text: str | None) -> list[str] | None:
    """A --splits value as a list; None (not given) stays None, meaning "the default"."""
    if text is None:
        return None
    splits = [split.strip() for split in text.split(",") if split.strip()]
    if not splits:
        raise CsconvError("--splits names no split")
    # `train,train` means train once: twice would write each shard twice, concurrently.
    return list(dict.fromkeys(splits))


def find_frames(dataset: Dataset | str, split: str) -> list[Frame]:
    """Every leftImg8bit/<split>/*/*_leftImg8bit.png, sorted by full path string."""
    if isinstance(dataset, str):
        dataset = open_dataset(dataset)
    if not dataset.has_split(split):
        raise CsconvError(f"{dataset.images_dir(split)}: split folder missing")
    if dataset.annotations is not FINE and split == TEST_SPLIT:
        # Test records carry no label: they would be fine's test records, not coarse ones.
        raise CsconvError(f"{dataset.labels_base}: {dataset.annotations.name} annotations hold no {split!r} split "
                          f"(only {', '.join(dataset.annotations.splits)})")
    folder = dataset.annotations.folder
    return [
        Frame(labels_base=dataset.labels_base, split=split, city=city, name=stem, image_path=path, labels_folder=folder)
        for path, city, stem in dataset.list_images(split)
    ]


def shard_bounds(count: int, num_shards: int) -> list[tuple[int, int]]:
    """[start, end) of each shard: DeepLab2 puts record i in shard i // ceil(n / shards)."""
    per_shard = math.ceil(count / num_shards)
    return [(min(k * per_shard, count), min((k + 1) * per_shard, count)) for k in range(num_shards)]
