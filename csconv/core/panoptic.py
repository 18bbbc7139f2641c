"""Panoptic labels (semantic * divisor + instance) as DeepLab2 builds them."""

from __future__ import annotations

import io
import sys
import zlib
from collections import defaultdict

import numpy as np

from . import png
from .errors import InputError
from .labels import BY_ID, IGNORE_LABEL, LABEL_DIVISOR, THING_TRAIN_IDS, Label

try:
    from . import _pngunfilter
except ImportError:  # built only where a C compiler was at hand; see setup.py
    _pngunfilter = None


def decode_instance_ids(data: bytes, path: str) -> np.ndarray:
    """A `*_instanceIds.png` as uint16, refusing 8-bit or colour files.

    The largest single cost of a panoptic frame. zlib-ng inflates and a small C
    loop unfilters (about 3 ms at 2048x1024, against 12 ms in libpng and 15 ms in
    Pillow); Pillow is the fallback where the C extension was not built, and for
    interlaced files.
    """
    info = png.inspect(data, path)
    if info.colour_type != 0 or info.bit_depth != 16:
        raise InputError(
            path,
            f"instanceIds must be a 16-bit grayscale PNG, got colour type {info.colour_type} "
            f"at {info.bit_depth} bits",
        )
    try:
        if _pngunfilter is not None and not info.interlaced:
            array = _decode_gray16(data, info)
        else:
            array = _decode_gray16_with_pillow(data, info)
    except Exception as error:  # imagecodecs raises its own error types, the C loop ValueError
        raise InputError(path, f"cannot decode label PNG ({error})") from None
    if array.shape != (info.height, info.width) or array.dtype != np.uint16:
        raise InputError(path, f"decoded to {array.dtype} {array.shape}, expected 16-bit {info.height}x{info.width}")
    return array


# Adam7: (first column, first row, column step, row step) of each of the seven passes.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _gray16_stream_size(info: png.PngInfo) -> int:
    """Bytes the image data of a 16-bit grayscale PNG inflates to: filter byte + 2 per pixel, per row."""
    if not info.interlaced:
        return info.height * (2 * info.width + 1)
    size = 0
    for x0, y0, dx, dy in _ADAM7:
        columns, rows = max(0, -(-(info.width - x0) // dx)), max(0, -(-(info.height - y0) // dy))
        if columns and rows:
            size += rows * (2 * columns + 1)
    return size


def _decode_gray16_with_pillow(data: bytes, info: png.PngInfo) -> np.ndarray:
    """The path where the C loop is not built, and for interlaced files.

    Not imagecodecs.png_decode: each libpng error it raises takes a reference from None
    (imagecodecs 2026.3.6), so a worker meeting a few thousand damaged labels dies with
    "Fatal Python error: none_dealloc" (found by fuzz/fuzz_label16.py). Pillow fills the
    rows of a stream that ends early with zeros and ignores data after the last row, so
    the inflated size is checked first, as the C path checks it.
    """
    from PIL import Image

    expected = _gray16_stream_size(info)
    inflater = zlib.decompressobj()
    try:
        size = len(inflater.decompress(info.compressed_pixels(data), expected))
        beyond = inflater.decompress(inflater.unconsumed_tail, 1)  # pending output counts too
    except zlib.error as error:
        raise ValueError(f"image data does not inflate ({error})") from None
    if size != expected or beyond:
        raise ValueError("inflated image data has the wrong size for its header")
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("I;16", "I;16B"):
            raise ValueError(f"Pillow reads it as mode {image.mode}")
        return np.asarray(image).astype(np.uint16)


def _decode_gray16(data: bytes, info: png.PngInfo) -> np.ndarray:
    import imagecodecs

    row_bytes = info.width * 2
    inflated = imagecodecs.zlibng_decode(info.compressed_pixels(data), out=info.height * (row_bytes + 1))
    pixels = _pngunfilter.unfilter(inflated, info.height, row_bytes, 2, sys.byteorder == "little")
    return np.frombuffer(pixels, dtype=np.uint16).reshape(info.height, info.width)


def label_of_value(value: int, path: str) -> Label:
    """The label an instanceIds value names: the value itself below 1000 (stuff and crowd
    regions), value // 1000 above (one instance)."""
    label_id = value if value < LABEL_DIVISOR else value // LABEL_DIVISOR
    label = BY_ID.get(label_id)
    if label is None or label_id < 0:
        raise InputError(path, f"value {value} names label id {label_id}, not in the Cityscapes table")
    return label


def rgb_to_ids(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic colours to segment ids: R + 256 G + 65536 B, as int32."""
    wide = rgb.astype(np.int32)
    return wide[..., 0] + (wide[..., 1] << 8) + (wide[..., 2] << 16)


def instance_ids_lookup(
    values: np.ndarray, path: str, treat_crowd_as_ignore: bool, label_divisor: int
) -> dict[int, int]:
    """Panoptic id for each distinct instanceIds value, given in ascending order.

    Instances are numbered per class in ascending value order, which is the order
    csCreatePanopticImgs lists segments and DeepLab2 numbers them.
    """
    ignored = IGNORE_LABEL * label_divisor
    counts: dict[int, int] = defaultdict(int)
    lookup: dict[int, int] = {}
    for value in values.tolist():
        label = label_of_value(value, path)
        if label.ignore_in_eval:
            lookup[value] = ignored
        elif not label.is_thing:
            lookup[value] = label.train_id * label_divisor
        elif value < LABEL_DIVISOR:  # a crowd ('group') region
            lookup[value] = ignored if treat_crowd_as_ignore else label.train_id * label_divisor
        else:
            counts[label.train_id] += 1
            if counts[label.train_id] >= label_divisor:
                raise InputError(
                    path, f"more than {label_divisor - 1} instances of '{label.name}' in one frame"
                )
            lookup[value] = label.train_id * label_divisor + counts[label.train_id]
    return lookup


def distinct_values(array: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a label map.

    Label maps are long runs of one value, so only the first value of each run is
    looked at: several times cheaper than a histogram over every pixel.
    """
    flat = array.reshape(-1)
    run_starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    return np.unique(np.concatenate((flat[:1], flat[run_starts])))


def panoptic_from_instance_ids(
    instance_ids: np.ndarray, path: str, treat_crowd_as_ignore: bool = True, label_divisor: int = 1000
) -> np.ndarray:
    present = distinct_values(instance_ids)
    lookup = instance_ids_lookup(present, path, treat_crowd_as_ignore, label_divisor)
    table = np.full(65536, IGNORE_LABEL * label_divisor, dtype=np.int32)
    table[np.fromiter(lookup.keys(), dtype=np.intp)] = np.fromiter(lookup.values(), dtype=np.int32)
    return map_through(table, instance_ids)


def map_through(table: np.ndarray, instance_ids: np.ndarray) -> np.ndarray:
    """table[instance_ids] for an int32 table of 65536 entries, in the C loop where it was built."""
    if _pngunfilter is not None and instance_ids.dtype == np.uint16 and instance_ids.flags.c_contiguous:
        mapped = _pngunfilter.lookup16(table, instance_ids)
        return np.frombuffer(mapped, dtype=np.int32).reshape(instance_ids.shape)
    return table[instance_ids]


def _checked_segments(segments, path: str) -> list[tuple[int, int, object, bool]]:
    """(id, category, area, crowd) of each segments_info entry, or an InputError naming the
    entry: the JSON is input like any other, and a category must be a trainId (0-255) for
    category * divisor to fit the int32 label."""
    checked = []
    try:
        for number, segment in enumerate(segments):
            try:
                segment_id, category = int(segment["id"]), int(segment["category_id"])
                area, crowd = segment["area"], bool(segment.get("iscrowd", 0))
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
                raise InputError(
                    path, f"segments_info entry {number} is malformed ({error.__class__.__name__}: {error})"
                ) from None
            if not 0 <= category <= IGNORE_LABEL:
                raise InputError(path, f"segments_info entry {number}: category_id {category} is not a trainId")
            checked.append((segment_id, category, area, crowd))
    except TypeError as error:  # segments_info is not a list
        raise InputError(path, f"segments_info is malformed ({error})") from None
    return checked


def panoptic_from_segments(
    panoptic_png: bytes,
    segments: list[dict],
    path: str,
    treat_crowd_as_ignore: bool = True,
    label_divisor: int = 1000,
) -> np.ndarray:
    """The prepared source: a COCO-panoptic PNG + its segments_info, checked as DeepLab2 does."""
    from PIL import Image

    png.inspect(panoptic_png, path)
    try:
        image = Image.open(io.BytesIO(panoptic_png))
        if image.mode != "RGB":
            raise InputError(path, f"panoptic PNG must be RGB, got mode {image.mode}")
        ids = rgb_to_ids(np.asarray(image))
    except (OSError, ValueError, SyntaxError) as error:
        raise InputError(path, f"cannot decode panoptic PNG ({error})") from None
    present, inverse, areas = np.unique(ids, return_inverse=True, return_counts=True)
    area_of = dict(zip(present.tolist(), areas.tolist()))

    semantic = {}  # segment id -> (semantic, instance), later segments win like the reference
    counts: dict[int, int] = defaultdict(int)
    for segment_id, category, expected_area, crowd in _checked_segments(segments, path):
        area = area_of.get(segment_id, 0)
        if area != expected_area:
            raise InputError(path, f"segment {segment_id} should cover {expected_area} pixels, covers {area}")
        if category in THING_TRAIN_IDS:
            if crowd:
                semantic[segment_id] = (IGNORE_LABEL if treat_crowd_as_ignore else category, 0)
                continue
            counts[category] += 1
            if counts[category] >= label_divisor:
                raise InputError(path, f"more than {label_divisor - 1} instances of class {category}")
            semantic[segment_id] = (category, counts[category])
        elif crowd:
            raise InputError(path, f"segment {segment_id} of stuff class {category} is marked crowd")
        else:
            semantic[segment_id] = (category, 0)

    table = np.full(len(present), IGNORE_LABEL * label_divisor, dtype=np.int32)
    index_of = {value: i for i, value in enumerate(present.tolist())}
    for segment_id, (category, instance) in semantic.items():
        if segment_id in index_of:
            table[index_of[segment_id]] = category * label_divisor + instance
    return table[inverse.reshape(ids.shape)]
