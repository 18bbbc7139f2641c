"""Semantic labels: trainId maps drawn from `*_gtFine_polygons.json`.

The result must be pixel-identical to what csCreateTrainIdLabelImgs draws, so the
drawing goes through Pillow's polygon fill, object by object, in file order; saved
with Pillow's default settings, as it saves, the PNG is byte-identical too.
"""

from __future__ import annotations

import io
import json

import numpy as np

from . import png
from .errors import InputError
from .labels import BY_ID, IGNORE_LABEL, label_for_polygon


def _load_objects(data: bytes, path: str) -> tuple[int, int, list]:
    try:
        doc = json.loads(data)
        width, height = int(doc["imgWidth"]), int(doc["imgHeight"])
        objects = doc["objects"]
        if not isinstance(objects, list):
            raise TypeError("'objects' is not a list")
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(path, f"malformed polygons JSON ({error.__class__.__name__}: {error})") from None
    return width, height, objects


def train_id_image(polygons_json: bytes, path: str):
    """The trainId map as a Pillow 'L' image."""
    from PIL import Image, ImageDraw

    width, height, objects = _load_objects(polygons_json, path)
    canvas = Image.new("L", (width, height), IGNORE_LABEL)
    draw = ImageDraw.Draw(canvas)
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
            points = [(p[0], p[1]) for p in obj["polygon"]]
            draw.polygon(points, fill=label.train_id)
        except (KeyError, TypeError, IndexError, ValueError) as error:
            raise InputError(path, f"object {number}: malformed polygon ({error})") from None
    return canvas


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
    ids = np.asarray(Image.open(io.BytesIO(label_ids_png)))
    table = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for label in BY_ID.values():
        if label.id >= 0:
            table[label.id] = label.train_id if label.train_id >= 0 else IGNORE_LABEL
    return png.encode_label(Image.fromarray(table[ids]), compress_level), size
