"""`csconv eval-gt`: `csconv prework --make panoptic` with the files straight in --output_dir
(the work is in csconv/evaluation/ground_truth.py)."""

from __future__ import annotations

import argparse

from ..core.prework import Kind
from . import registry
from .prework import add_run_flags, run_with


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval-gt", help=registry.summary("eval-gt"),
        description="Write the Cityscapes-panoptic ground truth in the evaluation server's format: "
        "O/cityscapes_panoptic_<split>.json and O/cityscapes_panoptic_<split>/<name>_gtFine_panoptic.png, "
        "with the original Cityscapes label ids as category ids. The result is identical to what "
        "cityscapesscripts' csCreatePanopticImgs (without --use-train-id) writes, computed from "
        "gtFine/<split>/*/*_gtFine_instanceIds.png, much faster: `csconv prework --make panoptic` with the "
        "files straight in O. Use it as the ground truth of csEvalPanopticSemanticLabeling "
        "(--gt-json-file O/cityscapes_panoptic_val.json).",
    )
    parser.add_argument(
        "--cityscapes_root", required=True,
        help="Cityscapes root holding gtFine/ (or gtFine_trainvaltest.zip); a folder or a URL such as s3://bucket/cityscapes",
    )
    parser.add_argument(
        "--output_dir", required=True,
        help="folder for the JSON files and PNG folders (created if missing), or a URL such as gs://bucket/gt",
    )
    parser.add_argument(
        "--splits", default=None,
        help="comma-separated splits (default: every one of train,val,test that has *_instanceIds.png); "
        "a named split without instanceIds is an error",
    )
    add_run_flags(parser)
    # The flag's name before convert got it too; kept so that old scripts still run.
    parser.add_argument("--compress_level", dest="png_compress_level", help=argparse.SUPPRESS)
    return parser


def run(args) -> int:
    return run_with(args, (Kind.PANOPTIC,), args.output_dir, panoptic_only_layout=True)
