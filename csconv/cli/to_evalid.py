"""`csconv to-evalid`: predictions into what the Cityscapes server accepts
(the work is in csconv/evaluation/predictions.py)."""

from __future__ import annotations

import argparse
import os
import sys

from ..core.errors import CsconvError
from ..evaluation.predictions import to_evalid_panoptic, to_evalid_semantic
from . import registry


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "to-evalid", help=registry.summary("to-evalid"),
        description="Convert DeepLab2 predictions into what the Cityscapes benchmark server and "
        "cityscapesscripts' evaluation scripts accept. --kind semantic: trainId maps (255 = ignore) "
        "-> labelIds PNGs, one per input, same relative path and name with .png "
        "(csEvalPixelLevelSemanticLabeling: CITYSCAPES_RESULTS=O). --kind panoptic: panoptic maps "
        "(semantic * label_divisor + instance) -> O/<name>.json + O/<name>/<image_id>_panoptic.png in "
        "COCO panoptic format with original category ids (csEvalPanopticSemanticLabeling "
        "--prediction-json-file O/<name>.json). Inputs: .npy, raw little-endian int32 .raw/.bin "
        "(give --height/--width), or PNG (8/16-bit grayscale = the value; RGB = R+256G+65536B; "
        "RGBA = the int32's little-endian bytes). The image id is the <city>_<seq>_<frame> prefix "
        "of the file name.",
    )
    parser.add_argument("input", metavar="INPUT", help="a prediction file, or a folder searched recursively")
    parser.add_argument("--output_dir", required=True, help="folder for the converted predictions (created if missing)")
    parser.add_argument("--kind", required=True, choices=("semantic", "panoptic"), help="what the predictions are")
    parser.add_argument("--height", type=int, default=None, help="rows of .raw/.bin predictions")
    parser.add_argument("--width", type=int, default=None, help="columns of .raw/.bin predictions")
    parser.add_argument("--label_divisor", type=int, default=1000, help="panoptic id = semantic * divisor + instance (default 1000)")
    parser.add_argument(
        "--name", default="cityscapes_panoptic_val",
        help="panoptic: base name of the JSON file and PNG folder (default cityscapes_panoptic_val, "
        "what csEvalPanopticSemanticLabeling looks for in CITYSCAPES_RESULTS)",
    )
    return parser


def run(args) -> int:
    if args.label_divisor < 1:
        raise CsconvError("--label_divisor must be positive")
    os.makedirs(args.output_dir, exist_ok=True)
    if args.kind == "semantic":
        written = to_evalid_semantic(args.input, args.output_dir, args.height, args.width)
        print(f"csconv: wrote {len(written)} labelIds PNGs to {args.output_dir}", file=sys.stderr)
    else:
        json_path = to_evalid_panoptic(
            args.input, args.output_dir, args.name, args.height, args.width, args.label_divisor
        )
        print(f"csconv: wrote panoptic predictions {json_path}", file=sys.stderr)
    return 0
