"""`csconv preview` (the work is in csconv/inspection/preview.py)."""

from __future__ import annotations

import argparse
import sys

from ..inspection.preview import preview
from .. import storage
from . import registry
from .flags import storage_options_flag


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "preview", help=registry.summary("preview"),
        description="Read record INDEX of SPLIT back from a csconv output folder (any sink: the "
        "manifest names it, and only the shard holding the record is read) and write one PNG: the "
        "image and its label coloured with the Cityscapes trainId palette (ignore = black), "
        "instance outlines in white (panoptic labels), and a legend of the classes present below.",
    )
    parser.add_argument("output_dir", metavar="OUT", help="a csconv output folder (with csconv-manifest.json)")
    parser.add_argument("--split", default="val", help="split to read (default val)")
    parser.add_argument("--index", type=int, default=0, help="record number within the split, from 0 (default 0)")
    parser.add_argument("-o", "--output", required=True, metavar="PNG", help="picture to write")
    parser.add_argument("--layout", choices=("side", "stacked"), default="side",
                        help="image and label side by side (default) or stacked")
    storage_options_flag(parser)
    return parser


def run(args) -> int:
    storage.configure(args.storage_options)
    sample, picture = preview(args.output_dir, args.split, args.index, args.output, args.layout)
    print(f"csconv: wrote {args.output} ({picture.width}x{picture.height}) for {args.split} record "
          f"{args.index} ({sample.filename})", file=sys.stderr)
    return 0
