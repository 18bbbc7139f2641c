"""Semantic labels: trainId maps drawn from `*_gtFine_polygons.json`.

The result must be pixel-identical to what csCreateTrainIdLabelImgs draws, so the
drawing goes through Pillow's polygon fill, object by object, in file order; saved
with Pillow's default settings, as it saves, the PNG is byte-identical too. The
prework's instanceTrainIds maps are drawn the same way, as csCreateTrainIdInstanceImgs
draws them.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from . import png
from .errors import InputError
from .labels import BY_ID, IGNORE_LABEL, LABEL_DIVISOR, Label, label_for_polygon


def _load_objects(data: bytes, path: str) -> tuple[int, int, list]:
    try:
        doc = json.loads(data)
        width, height = int(doc["imgWidth"]), int(doc["imgHeight"])
        objects = doc["objects"]
        if not isinstance(objects, list):
            raise TypeError("'objects' is not a list")
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(path, f"malformed polygons JSON ({error.__class__.__name__}: {error})") from None
    # Before the canvas is allocated: imgWidth*imgHeight is the memory drawing takes.
    png.check_size(width, height, path, "polygons JSON")
    return width, height, objects


@dataclass(frozen=True)
class Polygons:
    """A `*_polygons.json`, parsed: the canvas size and the objects to draw, in file order."""

    width: int
    height: int
    # (number of the object in the file, its label, whether named as a group, its points)
    objects: tuple[tuple[int, Label, bool, list], ...]


def parse_polygons(data: bytes, path: str) -> Polygons:
    """The objects cityscapesscripts draws: deleted ones and negative label ids (license
    plate) left out; an unknown name ending in 'group' stands for its base class as a group."""
    width, height, objects = _load_objects(data, path)
    drawn = []
    for number, obj in enumerate(objects):
        try:
            if obj.get("deleted", 0):
                continue
            name = str(obj["label"])
            label = label_for_polygon(name)
            if label is None:
                raise InputError(path, f"object {number}: unknown label {name!r}")
            if label.id < 0:
                continue
            drawn.append((number, label, label.name != name, [(p[0], p[1]) for p in obj["polygon"]]))
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as error:
            raise InputError(path, f"object {number}: malformed polygon ({error})") from None
    return Polygons(width, height, tuple(drawn))


def _draw(polygons: Polygons, mode: str, background: int, fill_of, path: str):
    from PIL import Image, ImageDraw

    canvas = Image.new(mode, (polygons.width, polygons.height), background)
    draw = ImageDraw.Draw(canvas)
    for number, label, is_group, points in polygons.objects:
        try:
            draw.polygon(points, fill=fill_of(label, is_group))
        except (TypeError, ValueError) as error:
            raise InputError(path, f"object {number}: malformed polygon ({error})") from None
    return canvas


def train_id_image(polygons_json: bytes | Polygons, path: str):
    """The trainId map as a Pillow 'L' image."""
    polygons = polygons_json if isinstance(polygons_json, Polygons) else parse_polygons(polygons_json, path)
    return _draw(polygons, "L", IGNORE_LABEL, lambda label, is_group: label.train_id, path)


def instance_train_ids(polygons: Polygons, path: str) -> np.ndarray:
    """What csCreateTrainIdInstanceImgs draws, as uint16: trainId * 1000 + k for the k-th
    (from 0, in file order) polygon of a thing class with a trainId, the plain trainId for
    everything else (group polygons and stuff), 255 where nothing is drawn.

    Drawn on a 32-bit canvas as that tool draws, so every polygon edge falls on the same
    pixels.
    """
    seen: dict[str, int] = defaultdict(int)

    def fill(label: Label, is_group: bool) -> int:
        if not label.has_instances or is_group or label.train_id == IGNORE_LABEL:
            return label.train_id
        seen[label.name] += 1
        return label.train_id * LABEL_DIVISOR + seen[label.name] - 1

    values = np.asarray(_draw(polygons, "I", IGNORE_LABEL, fill, path))
    if values.max(initial=0) > np.iinfo(np.uint16).max:
        crowded = max(seen, key=seen.get)
        raise InputError(path, f"{seen[crowded]} instances of '{crowded}': their ids do not fit a 16-bit PNG")
    return values.astype(np.uint16)


def semantic_png(
    polygons_json: bytes, path: str, compress_level: int | None = None
) -> tuple[bytes, tuple[int, int]]:
    """The trainId PNG and its (height, width); see png.encode_label for compress_level."""
    image = train_id_image(polygons_json, path)
    return png.encode_label(image, compress_level), (image.height, image.width)


def gray8_size(data: bytes, path: str, what: str) -> tuple[int, int]:
    """(height, width) of a label PNG that must be 8-bit grayscale, read from its header."""
    info = png.inspect(data, path)
    if info.colour_type != 0 or info.bit_depth != 8:
        raise InputError(
            path,
            f"{what} must be an 8-bit grayscale PNG, got colour type {info.colour_type} at {info.bit_depth} bits",
        )
    return info.height, info.width


def semantic_png_from_label_ids(
    label_ids_png: bytes, path: str, compress_level: int | None = None
) -> tuple[bytes, tuple[int, int]]:
    """The explicit `labelIds` option: remap the shipped label map through the table.

    Not the default: the shipped map was drawn by other software and differs from
    the reference along polygon edges.
    """
    from PIL import Image

    size = gray8_size(label_ids_png, path, "labelIds")
    try:
        ids = np.asarray(Image.open(io.BytesIO(label_ids_png)))
    except (OSError, ValueError, SyntaxError) as error:
        raise InputError(path, f"cannot decode labelIds PNG ({error})") from None
    table = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for label in BY_ID.values():
        if label.id >= 0:
            table[label.id] = label.train_id if label.train_id >= 0 else IGNORE_LABEL
    return png.encode_label(Image.fromarray(table[ids]), compress_level), size
