"""The cityscapesscripts prework, one annotation file at a time: the bytes of each output.

Which files there are and how they are named follows the reference tools:

- `csCreateTrainIdLabelImgs`: for every `*_gt*_polygons.json`, `*_labelTrainIds.png`
  beside it (semantic.train_id_image, saved as Pillow saves by default);
- `csCreateTrainIdInstanceImgs`: `*_instanceTrainIds.png` beside it. That tool saves a
  32-bit image, which current Pillow cannot write as PNG; here the same values go into a
  16-bit grayscale PNG;
- `csCreatePanopticImgs [--use-train-id]`: for every `*_instanceIds.png`, a
  `*_panoptic.png` in the split's panoptic folder, and the split's JSON (panoptic_gt).
  Both flavours have the same PNG, so it is encoded once.
"""

from __future__ import annotations

import fnmatch
from enum import Enum

from . import png
from .panoptic_gt import INSTANCE_IDS_SUFFIX, JsonEntries, panoptic_image
from .semantic import instance_train_ids, parse_polygons, train_id_image

POLYGONS_SUFFIX = "_polygons.json"
# The file name patterns the reference tools glob for.
POLYGONS_PATTERN = "*_gt*" + POLYGONS_SUFFIX
INSTANCE_IDS_PATTERN = "*" + INSTANCE_IDS_SUFFIX


class Kind(str, Enum):
    """One kind of prework output; the value is what --make takes."""

    LABEL_TRAIN_IDS = "labelTrainIds"
    PANOPTIC_TRAIN_ID = "panoptic_trainId"
    PANOPTIC = "panoptic"
    INSTANCE_TRAIN_IDS = "instanceTrainIds"

    @property
    def from_polygons(self) -> bool:
        return self in (Kind.LABEL_TRAIN_IDS, Kind.INSTANCE_TRAIN_IDS)

    @property
    def train_ids(self) -> bool:
        """For a panoptic kind: whether its categories are trainIds."""
        return self is Kind.PANOPTIC_TRAIN_ID


# The tree DeepLab2's Cityscapes page shows after the prework.
DEFAULT_KINDS = (Kind.LABEL_TRAIN_IDS, Kind.PANOPTIC_TRAIN_ID, Kind.PANOPTIC)


def is_polygons_file(name: str) -> bool:
    return fnmatch.fnmatchcase(name, POLYGONS_PATTERN)


def is_instance_ids_file(name: str) -> bool:
    return fnmatch.fnmatchcase(name, INSTANCE_IDS_PATTERN)


def label_file_name(polygons_name: str, kind: Kind) -> str:
    """The file a polygon-drawn kind writes beside `polygons_name`."""
    return polygons_name.replace(POLYGONS_SUFFIX, f"_{kind.value}.png")


def polygon_files(
    polygons_json: bytes, path: str, kinds, compress_level: int | None = None
) -> dict[Kind, bytes]:
    """The PNG of each polygon-drawn kind asked for; see png.encode_label for compress_level."""
    from PIL import Image

    polygons = parse_polygons(polygons_json, path)
    files = {}
    if Kind.LABEL_TRAIN_IDS in kinds:
        files[Kind.LABEL_TRAIN_IDS] = png.encode_label(train_id_image(polygons, path), compress_level)
    if Kind.INSTANCE_TRAIN_IDS in kinds:
        # A uint16 array becomes a 16-bit grayscale image ('I;16').
        image = Image.fromarray(instance_train_ids(polygons, path))
        files[Kind.INSTANCE_TRAIN_IDS] = png.encode_label(image, compress_level)
    return files


def panoptic_files(
    instance_ids_png: bytes, path: str, name: str, kinds, json_kinds, compress_level: int | None = None
) -> tuple[dict[Kind, bytes], JsonEntries | None]:
    """The panoptic PNG of each panoptic kind in `kinds` (none: the PNG is not encoded), and
    the frame's entries in the split JSON of each kind in `json_kinds` (none: None)."""
    image, frame = panoptic_image(instance_ids_png, path, name)
    wanted = [kind for kind in kinds if not kind.from_polygons]
    encoded = png.encode_label(image, compress_level) if wanted else b""
    entries = frame.entries(kind.train_ids for kind in json_kinds) if json_kinds else None
    return {kind: encoded for kind in wanted}, entries
