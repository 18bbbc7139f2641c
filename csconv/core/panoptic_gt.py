"""Panoptic ground truth in COCO panoptic form, as `csCreatePanopticImgs` writes it.

Per split, a JSON document and a folder of `<name>_gtFine_panoptic.png`, one per
`*_instanceIds.png`. With `train_ids` the category ids are trainIds (what
`--use-train-id` gives, and DeepLab2 reads); otherwise the original label ids (what the
evaluation server reads). The PNG is the same in both.

Segment facts per distinct value v of an instanceIds map:

- label id = v if v < 1000 else v // 1000; labels marked ignoreInEval give no segment,
  and their pixels stay 0 (void) in the PNG;
- the segment id is v itself, its colour (v % 256, v // 256, 0);
- iscrowd = 1 when v < 1000 and the label has instances, else 0;
- area and bounding box [x, y, width, height] over the pixels equal to v.

Everything is computed in one pass over the runs of equal values in each row, instead
of one full-image mask per segment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .labels import LABEL_DIVISOR, LABELS
from .panoptic import decode_instance_ids, label_of_value, map_through

INSTANCE_IDS_SUFFIX = "_instanceIds.png"


def categories(train_ids: bool = False) -> list[dict]:
    """The COCO categories list: every label that counts in evaluation."""
    return [
        {
            "id": label.train_id if train_ids else label.id,
            "name": label.name,
            "color": list(label.color),
            "supercategory": label.category,
            "isthing": 1 if label.has_instances else 0,
        }
        for label in LABELS
        if not label.ignore_in_eval
    ]


def segment_table(instance_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per distinct value of a label map: value, area, and bounding box extremes.

    Works on horizontal runs of equal values (a run never crosses a row end): a run's
    row and first/last column are known from its start offset and length, so the
    areas and boxes of all values come from a few reductions over the runs, grouped by
    value.
    """
    height, width = instance_ids.shape
    flat = instance_ids.reshape(-1)
    n = flat.size
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    change[::width] = True  # every row starts a run
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, n))
    values = flat[starts]

    order = np.argsort(values, kind="stable")  # stable: runs of a value stay in raster order
    values, starts, lengths = values[order], starts[order], lengths[order]
    first = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    last = np.r_[first[1:] - 1, len(values) - 1]

    rows, cols = np.divmod(starts, width)
    return {
        "value": values[first].astype(np.int64),
        "area": np.add.reduceat(lengths, first),
        "x0": np.minimum.reduceat(cols, first),
        "x1": np.maximum.reduceat(cols + lengths - 1, first),
        "y0": rows[first],  # raster order: the first run of a value is on its top row
        "y1": rows[last],
    }


def segments_of(instance_ids: np.ndarray):
    """(value, COCO segment dict with iscrowd 0) per distinct value, ascending."""
    table = segment_table(instance_ids)
    for value, area, x0, x1, y0, y1 in zip(*(table[k].tolist() for k in ("value", "area", "x0", "x1", "y0", "y1"))):
        yield value, {"id": value, "category_id": None, "area": area,
                      "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1], "iscrowd": 0}


@dataclass(frozen=True)
class PanopticFrame:
    """What the JSON says about one frame, in either flavour of category ids."""

    instance_ids_name: str  # the `*_instanceIds.png` file name it was made from
    width: int
    height: int
    segments: tuple[dict, ...]  # with original label ids as category_id

    @property
    def image_id(self) -> str:
        return self.instance_ids_name.replace("_gtFine" + INSTANCE_IDS_SUFFIX, "")

    def image(self) -> dict:
        file_name = self.instance_ids_name.replace(INSTANCE_IDS_SUFFIX, "_leftImg8bit.png")
        return {"id": self.image_id, "width": self.width, "height": self.height, "file_name": file_name}

    def annotation(self, train_ids: bool) -> dict:
        segments = list(self.segments)
        if train_ids:
            segments = [{**s, "category_id": label_of_value(s["id"], self.instance_ids_name).train_id} for s in segments]
        file_name = panoptic_png_name(self.instance_ids_name)
        return {"image_id": self.image_id, "file_name": file_name, "segments_info": segments}

    def entries(self, flavours) -> "JsonEntries":
        """The frame's entries in the JSON of each flavour (train_ids True / False) asked for."""
        return JsonEntries(_list_item(self.image()), {bool(t): _list_item(self.annotation(t)) for t in flavours})


@dataclass(frozen=True)
class JsonEntries:
    """A frame's items in a split JSON's "images" and "annotations" lists, as the text they
    are there. Made where the frame is (a worker process), so that writing a JSON of
    thousands of frames is joining text instead of minutes of json's pure-Python indenting
    encoder in one process, and holds no more than that text."""

    image: str
    annotations: dict[bool, str]  # by train_ids

    def to_json(self) -> list:
        return [self.image, {("train_ids" if k else "label_ids"): v for k, v in self.annotations.items()}]

    @classmethod
    def from_json(cls, value: list) -> "JsonEntries":
        image, annotations = value
        return cls(image, {key == "train_ids": text for key, text in annotations.items()})


_INDENT = 4  # and sort_keys: json.dump(..., sort_keys=True, indent=4), as csCreatePanopticImgs writes


def _indented(value, level: int) -> str:
    """`value` as json.dumps writes it `level` levels deep (its first line not indented).

    json's indenting encoder puts each nested line `indent * depth` spaces in, so the
    text of a value encoded alone, every line after the first moved in by its depth's
    indentation, is the text it has nested there.
    """
    return json.dumps(value, sort_keys=True, indent=_INDENT).replace("\n", "\n" + " " * (_INDENT * level))


def _list_item(value) -> str:
    """An item of a list that is a value of the document: two levels deep, indentation included."""
    return " " * (2 * _INDENT) + _indented(value, 2)


def panoptic_png_name(instance_ids_name: str) -> str:
    return instance_ids_name.replace(INSTANCE_IDS_SUFFIX, "_panoptic.png")


def panoptic_frame(instance_ids: np.ndarray, path: str):
    """(RGB Pillow image, segments_info with original label ids) for one instanceIds array."""
    from PIL import Image

    colours = np.zeros(1 << 16, dtype=np.int32)  # value -> itself when kept, 0 (void) otherwise
    segments = []
    for value, segment in segments_of(instance_ids):
        label = label_of_value(value, path)
        if label.ignore_in_eval:
            continue
        colours[value] = value
        segment["category_id"] = label.id
        segment["iscrowd"] = 1 if value < LABEL_DIVISOR and label.has_instances else 0
        segments.append(segment)
    # A pixel's little-endian int32 is its colour: R = low byte, G = high byte, then B = 0
    # and a fourth byte Pillow's RGBX unpacking drops; far cheaper than filling an H x W x 3
    # array by strides.
    pixels = np.asarray(map_through(colours, instance_ids), dtype="<i4")
    height, width = instance_ids.shape
    return Image.frombytes("RGB", (width, height), pixels.tobytes() if not pixels.flags.c_contiguous else pixels,
                           "raw", "RGBX"), segments


def panoptic_image(instance_ids_png: bytes, path: str, instance_ids_name: str):
    """The panoptic RGB image (Pillow) of a `*_instanceIds.png` and the frame's JSON facts."""
    instance_ids = decode_instance_ids(instance_ids_png, path)
    image, segments = panoptic_frame(instance_ids, path)
    height, width = instance_ids.shape
    return image, PanopticFrame(instance_ids_name, width, height, tuple(segments))


def json_document(entries: list[JsonEntries], train_ids: bool) -> bytes:
    """The split's JSON, byte for byte as csCreatePanopticImgs writes it; entries in path order."""

    def listed(items: list[str]) -> str:
        return "[\n" + ",\n".join(items) + "\n" + " " * _INDENT + "]" if items else "[]"

    pad = " " * _INDENT
    return (
        "{\n"
        f'{pad}"annotations": {listed([e.annotations[train_ids] for e in entries])},\n'
        f'{pad}"categories": {_indented(categories(train_ids), 1)},\n'
        f'{pad}"images": {listed([e.image for e in entries])}\n'
        "}"
    ).encode()


def split_names(split: str, train_ids: bool) -> tuple[str, str]:
    """(JSON file name, PNG folder name) of a split."""
    base = f"cityscapes_panoptic_{split}{'_trainId' if train_ids else ''}"
    return base + ".json", base
