"""Turn a model's predictions into what the Cityscapes server accepts.

The server (and cityscapesscripts' evaluation scripts) work in ORIGINAL Cityscapes label
ids, while DeepLab2 predicts trainIds:

- semantic: a trainId map (uint8, 255 = ignore) becomes a labelIds PNG: trainId t -> the
  label id of train class t, 255 -> 0 ('unlabeled');
- panoptic: a DeepLab2 panoptic map (semantic * label_divisor + instance) becomes a COCO
  panoptic PNG + JSON whose category ids are original label ids. A thing class
  (person ... bicycle) gives one segment per instance > 0; instance 0 of a thing class,
  and every stuff class, give one segment per class; semantic 255 is void (id 0, listed
  in no segments_info).

Prediction files: `.npy` (2-D integer array), `.raw` / `.bin` (little-endian int32, row
major, size from --height/--width) and PNG: 8- or 16-bit grayscale holds the value
itself; an 8-bit RGB PNG holds R + 256 G + 65536 B, an 8-bit RGBA PNG the int32's four
little-endian bytes.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from ..core.errors import CsconvError, InputError
from ..core.labels import BY_TRAIN_ID, IGNORE_LABEL, NUM_TRAIN_CLASSES
from ..core.panoptic import distinct_values, rgb_to_ids
from ..storage.local import write_atomically
from ..core.panoptic_gt import categories, segments_of

EXTENSIONS = (".png", ".npy", ".raw", ".bin")
# <city>_<seq>_<frame>: the image id the server matches predictions by.
IMAGE_ID = re.compile(r"^(.+?_\d{6}_\d{6})")

def train_to_label_id_lut() -> np.ndarray:
    """uint8 table trainId -> original label id; 255 -> 0; other values -> 0 (checked apart)."""
    lut = np.zeros(256, dtype=np.uint8)
    for train_id, label in BY_TRAIN_ID.items():
        lut[train_id] = label.id
    return lut


def image_id_of(path: str) -> str:
    """`frankfurt_000000_000294` from `frankfurt_000000_000294_leftImg8bit.npy` (else the file stem)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    match = IMAGE_ID.match(stem)
    return match.group(1) if match else stem


def find_inputs(source: str) -> list[str]:
    """The prediction files: `source` itself, or every file with a known extension under it, sorted."""
    if os.path.isfile(source):
        return [source]
    if not os.path.isdir(source):
        raise InputError(source, "no such file or folder")
    found = []
    for folder, _, names in os.walk(source):
        found += [os.path.join(folder, n) for n in names if n.lower().endswith(EXTENSIONS)]
    if not found:
        raise InputError(source, f"no prediction files ({', '.join(EXTENSIONS)}) in this folder")
    return sorted(found)


def read_prediction(path: str, height: int | None = None, width: int | None = None) -> np.ndarray:
    """A prediction file as a 2-D int64 array (see the module doc for the formats)."""
    extension = os.path.splitext(path)[1].lower()
    if extension == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(path, f"cannot load .npy ({error})") from None
        if array.dtype.kind not in "ui":
            raise InputError(path, f"expected an integer array, got {array.dtype}")
        array = np.squeeze(array)
    elif extension in (".raw", ".bin"):
        if not height or not width:
            raise CsconvError(f"{path}: raw int32 predictions need --height and --width")
        size = os.path.getsize(path)
        if size != height * width * 4:
            raise InputError(path, f"{size} bytes, but {height}x{width} int32 needs {height * width * 4}")
        array = np.fromfile(path, dtype="<i4").reshape(height, width)
    elif extension == ".png":
        array = _read_png(path)
    else:
        raise InputError(path, f"unknown prediction file type {extension!r} (use {', '.join(EXTENSIONS)})")
    if array.ndim != 2:
        raise InputError(path, f"expected a 2-D map, got shape {array.shape}")
    return array.astype(np.int64, copy=False)


def _read_png(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.asarray(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise InputError(path, f"cannot decode PNG ({error})") from None
    if mode in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        return array
    if mode == "RGB":
        return rgb_to_ids(array)
    if mode == "RGBA":
        return np.ascontiguousarray(array).view("<i4")[..., 0]
    raise InputError(path, f"unsupported PNG mode {mode!r} (grayscale 8/16-bit, RGB or RGBA)")


# --- semantic ---------------------------------------------------------------------------

def semantic_to_label_ids(train_ids: np.ndarray, path: str) -> np.ndarray:
    values = np.unique(train_ids)
    bad = values[(values != IGNORE_LABEL) & ((values < 0) | (values >= NUM_TRAIN_CLASSES))]
    if bad.size:
        raise InputError(path, f"values {bad[:10].tolist()} are neither trainIds 0..18 nor 255")
    return train_to_label_id_lut()[train_ids.astype(np.uint8)]


# --- panoptic ---------------------------------------------------------------------------

def panoptic_to_coco(panoptic: np.ndarray, path: str, label_divisor: int = 1000) -> tuple[np.ndarray, list[dict]]:
    """(RGB uint8 COCO panoptic image, segments_info with original label ids)."""
    if panoptic.size and panoptic.min() < 0:
        raise InputError(path, "negative panoptic ids")
    values = distinct_values(panoptic)
    inverse = np.searchsorted(values, panoptic)
    semantic, instance = np.divmod(values, label_divisor)
    segment_of_value = np.zeros(len(values), dtype=np.int64)  # 0: void
    for i, (train_id, inst) in enumerate(zip(semantic.tolist(), instance.tolist())):
        if train_id == IGNORE_LABEL:
            continue
        label = BY_TRAIN_ID.get(train_id)
        if label is None:
            raise InputError(path, f"panoptic id {values[i]} has semantic class {train_id}, not a trainId 0..18 or 255")
        # Segment ids mirror the ground truth's: label id * divisor (+ instance for things).
        segment_of_value[i] = label.id * label_divisor + (inst if label.is_thing else 0)
    if segment_of_value.max(initial=0) >= 1 << 24:
        raise CsconvError(f"--label_divisor {label_divisor} is too large for 24-bit COCO segment ids")
    segment_ids = segment_of_value[inverse]

    segments = []
    for sid, segment in segments_of(segment_ids):
        if sid != 0:
            segment["category_id"] = sid // label_divisor
            segments.append(segment)
    rgb = np.ascontiguousarray(segment_ids.astype("<u4")).view(np.uint8).reshape(panoptic.shape + (4,))[..., :3]
    return np.ascontiguousarray(rgb), segments


def _output_stem(path: str, source: str) -> str:
    """The prediction's path relative to INPUT, without extension (a file INPUT: its stem)."""
    if os.path.isfile(source):
        return os.path.splitext(os.path.basename(path))[0]
    return os.path.splitext(os.path.relpath(path, source))[0]


def to_evalid_semantic(source: str, output_dir: str, height=None, width=None) -> list[str]:
    from PIL import Image

    written = []
    for path in find_inputs(source):
        label_ids = semantic_to_label_ids(read_prediction(path, height, width), path)
        out = os.path.join(output_dir, _output_stem(path, source) + ".png")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        Image.fromarray(label_ids, "L").save(out)
        written.append(out)
    return written


def to_evalid_panoptic(
    source: str, output_dir: str, name: str = "cityscapes_panoptic_val", height=None, width=None, label_divisor: int = 1000
) -> str:
    """Write O/<name>.json and O/<name>/<image_id>_panoptic.png; returns the JSON path."""
    from PIL import Image

    folder = os.path.join(output_dir, name)
    os.makedirs(folder, exist_ok=True)
    annotations, seen = [], {}
    for path in find_inputs(source):
        image_id = image_id_of(path)
        if image_id in seen:
            raise InputError(path, f"image id {image_id!r} also comes from {seen[image_id]}")
        seen[image_id] = path
        rgb, segments = panoptic_to_coco(read_prediction(path, height, width), path, label_divisor)
        file_name = f"{image_id}_panoptic.png"
        Image.fromarray(rgb, "RGB").save(os.path.join(folder, file_name))
        annotations.append({"image_id": image_id, "file_name": file_name, "segments_info": segments})
    json_path = os.path.join(output_dir, name + ".json")
    write_atomically(json_path, json.dumps({"annotations": annotations, "categories": categories()}, indent=2).encode())
    return json_path
