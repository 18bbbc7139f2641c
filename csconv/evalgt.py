"""`csconv eval-gt`: Cityscapes-panoptic ground truth in the benchmark server's format.

The output is what `csCreatePanopticImgs` (without `--use-train-id`) writes for the same
input: per split `cityscapes_panoptic_<split>.json` plus a folder
`cityscapes_panoptic_<split>/` of `<name>_gtFine_panoptic.png` files in COCO panoptic
form (RGB, segment id = R + 256 G + 65536 B). Categories carry the ORIGINAL Cityscapes
label ids (person 24, car 26, ...), as the evaluation server expects.

Segment facts per distinct value v of a `*_gtFine_instanceIds.png`:

- label id = v if v < 1000 else v // 1000; labels marked ignoreInEval give no segment,
  and their pixels stay 0 (void) in the PNG;
- the segment id is v itself, its colour (v % 256, v // 256, 0);
- iscrowd = 1 when v < 1000 and the label has instances, else 0;
- area and bounding box [x, y, width, height] over the pixels equal to v.

Everything is computed in one pass over the runs of equal values in each row, instead
of one full-image mask per segment.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .core.discover import parse_splits
from .core.errors import CsconvError, InputError
from .core.panoptic import decode_instance_ids, label_of_value
from .core.png import check_compress_level, encode_label, parse_compress_level
from .core.sources import read_file
from .output import write_atomically
from .core.labels import LABEL_DIVISOR, LABELS

SPLITS = ("train", "val", "test")
INSTANCE_SUFFIX = "_instanceIds.png"


def categories() -> list[dict]:
    """The COCO categories list: every label that counts in evaluation, by original id."""
    return [
        {
            "id": label.id,
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


def panoptic_frame(instance_ids: np.ndarray, path: str) -> tuple[np.ndarray, list[dict]]:
    """(RGB uint8 panoptic image, segments_info) for one instanceIds array."""
    lut = np.zeros(1 << 16, dtype="<u2")  # value -> itself when kept, 0 (void) otherwise
    segments = []
    for value, segment in segments_of(instance_ids):
        label = label_of_value(value, path)
        if label.ignore_in_eval:
            continue
        lut[value] = value
        segment["category_id"] = label.id
        segment["iscrowd"] = 1 if value < LABEL_DIVISOR and label.has_instances else 0
        segments.append(segment)
    kept = lut[instance_ids]
    rgb = np.zeros(instance_ids.shape + (3,), dtype=np.uint8)
    rgb[..., :2] = kept.view(np.uint8).reshape(instance_ids.shape + (2,))  # low byte R, high byte G; B = 0
    return rgb, segments


def instance_files(gtfine: str, split: str) -> list[str]:
    return sorted(glob.glob(os.path.join(gtfine, split, "*", "*" + INSTANCE_SUFFIX)))


def convert_frame(path: str, folder: str, compress_level: int | None) -> tuple[dict, dict]:
    from PIL import Image

    instance_ids = decode_instance_ids(read_file(path), path)
    rgb, segments = panoptic_frame(instance_ids, path)
    base = os.path.basename(path)
    image_id = base.replace("_gtFine" + INSTANCE_SUFFIX, "")
    out_name = base.replace(INSTANCE_SUFFIX, "_panoptic.png")
    with open(os.path.join(folder, out_name), "wb") as f:
        f.write(encode_label(Image.fromarray(rgb, "RGB"), compress_level))
    height, width = instance_ids.shape
    image = {"id": image_id, "width": width, "height": height, "file_name": base.replace(INSTANCE_SUFFIX, "_leftImg8bit.png")}
    annotation = {"image_id": image_id, "file_name": out_name, "segments_info": segments}
    return image, annotation


def write_split(
    cityscapes_root: str, output_dir: str, split: str, workers: int = 1, compress_level: int | None = None
) -> tuple[str, int]:
    """Write one split's JSON and PNG folder; returns (json path, frame count)."""
    gtfine = os.path.join(cityscapes_root, "gtFine")
    files = instance_files(gtfine, split)
    if not files:
        raise InputError(os.path.join(gtfine, split), f"no *{INSTANCE_SUFFIX} files for split {split!r}")
    base = f"cityscapes_panoptic_{split}"
    folder = os.path.join(output_dir, base)
    os.makedirs(folder, exist_ok=True)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:  # PNG codecs and numpy release the GIL
            results = list(pool.map(lambda f: convert_frame(f, folder, compress_level), files))
    else:
        results = [convert_frame(f, folder, compress_level) for f in files]
    document = {
        "images": [image for image, _ in results],
        "annotations": [annotation for _, annotation in results],
        "categories": categories(),
    }
    json_path = os.path.join(output_dir, base + ".json")
    write_atomically(json_path, json.dumps(document, sort_keys=True, indent=4).encode())
    return json_path, len(files)


def eval_gt(
    cityscapes_root: str,
    output_dir: str,
    splits: list[str] | None = None,
    workers: int = 1,
    compress_level: int | None = None,
) -> dict[str, int]:
    """Panoptic ground truth for the given splits (default: every split holding instanceIds).

    compress_level None: Pillow's default save, csCreatePanopticImgs's bytes.
    """
    check_compress_level(compress_level)
    gtfine = os.path.join(cityscapes_root, "gtFine")
    if not os.path.isdir(gtfine):
        raise InputError(cityscapes_root, "no gtFine/ folder; is this a Cityscapes root?")
    if splits is None:
        splits = [s for s in SPLITS if instance_files(gtfine, s)]
        if not splits:
            raise InputError(gtfine, f"no split holds *{INSTANCE_SUFFIX} files")
    os.makedirs(output_dir, exist_ok=True)
    return {split: write_split(cityscapes_root, output_dir, split, workers, compress_level)[1] for split in splits}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval-gt",
        help="write Cityscapes-panoptic ground truth for the evaluation server (COCO panoptic PNG + JSON)",
        description="Write the Cityscapes-panoptic ground truth in the evaluation server's format: "
        "O/cityscapes_panoptic_<split>.json and O/cityscapes_panoptic_<split>/<name>_gtFine_panoptic.png, "
        "with the original Cityscapes label ids as category ids. The result is identical to what "
        "cityscapesscripts' csCreatePanopticImgs (without --use-train-id) writes, computed from "
        "gtFine/<split>/*/*_gtFine_instanceIds.png, much faster. Use it as the ground truth of "
        "csEvalPanopticSemanticLabeling (--gt-json-file O/cityscapes_panoptic_val.json).",
    )
    parser.add_argument("--cityscapes_root", required=True, help="Cityscapes root holding gtFine/")
    parser.add_argument("--output_dir", required=True, help="folder for the JSON files and PNG folders (created if missing)")
    parser.add_argument(
        "--splits", default=None,
        help="comma-separated splits (default: every one of train,val,test that has *_instanceIds.png); "
        "a named split without instanceIds is an error",
    )
    parser.add_argument("--workers", type=int, default=1, help="threads converting frames in parallel (default 1)")
    parser.add_argument(
        "--png_compress_level", metavar="0-9",
        help="zlib level of the PNGs: faster (1) or smaller (9), the same pixels but other bytes than "
        "csCreatePanopticImgs writes (default: Pillow's default settings, its bytes exactly)",
    )
    # The flag's name before convert got it too; kept so that old scripts still run.
    parser.add_argument("--compress_level", dest="png_compress_level", help=argparse.SUPPRESS)
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    splits = parse_splits(args.splits)
    compress_level = parse_compress_level(args.png_compress_level)
    if args.workers < 1:
        raise CsconvError("--workers must be at least 1")
    started = time.monotonic()
    counts = eval_gt(args.cityscapes_root, args.output_dir, splits, args.workers, compress_level)
    done = ", ".join(f"{split} {n}" for split, n in counts.items())
    print(
        f"csconv: wrote panoptic ground truth ({done} frames) to {args.output_dir} in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return 0
