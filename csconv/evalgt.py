"""`csconv eval-gt`: Cityscapes-panoptic ground truth in the benchmark server's format.

This is `csconv prework --make panoptic` with another layout: the output is what
`csCreatePanopticImgs` (without `--use-train-id`) writes for the same input, per split
`cityscapes_panoptic_<split>.json` plus a folder `cityscapes_panoptic_<split>/` of
`<name>_gtFine_panoptic.png` files (categories by original Cityscapes label id), but
straight in --output_dir instead of inside gtFine/. See core/panoptic_gt.py for what
the files hold.
"""

from __future__ import annotations

import argparse

from .core.png import check_compress_level
from .core.prework import Kind
from .prework import add_run_flags, prework, run_with


def eval_gt(
    cityscapes_root: str,
    output_dir: str,
    splits: list[str] | None = None,
    workers: int = 1,
    compress_level: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> dict[str, int]:
    """Panoptic ground truth for the given splits (default: every split holding instanceIds);
    frames per split. compress_level None: Pillow's default save, csCreatePanopticImgs's bytes."""
    check_compress_level(compress_level)
    summary = prework(
        cityscapes_root, output_dir, (Kind.PANOPTIC,), splits, workers, overwrite, resume, compress_level,
        panoptic_only_layout=True,
    )
    return {split: counts[Kind.PANOPTIC.value] for split, counts in summary.counts.items()}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval-gt",
        help="write Cityscapes-panoptic ground truth for the evaluation server (COCO panoptic PNG + JSON)",
        description="Write the Cityscapes-panoptic ground truth in the evaluation server's format: "
        "O/cityscapes_panoptic_<split>.json and O/cityscapes_panoptic_<split>/<name>_gtFine_panoptic.png, "
        "with the original Cityscapes label ids as category ids. The result is identical to what "
        "cityscapesscripts' csCreatePanopticImgs (without --use-train-id) writes, computed from "
        "gtFine/<split>/*/*_gtFine_instanceIds.png, much faster: `csconv prework --make panoptic` with the "
        "files straight in O. Use it as the ground truth of csEvalPanopticSemanticLabeling "
        "(--gt-json-file O/cityscapes_panoptic_val.json).",
    )
    parser.add_argument(
        "--cityscapes_root", required=True, help="Cityscapes root holding gtFine/ (or gtFine_trainvaltest.zip)"
    )
    parser.add_argument("--output_dir", required=True, help="folder for the JSON files and PNG folders (created if missing)")
    parser.add_argument(
        "--splits", default=None,
        help="comma-separated splits (default: every one of train,val,test that has *_instanceIds.png); "
        "a named split without instanceIds is an error",
    )
    add_run_flags(parser)
    # The flag's name before convert got it too; kept so that old scripts still run.
    parser.add_argument("--compress_level", dest="png_compress_level", help=argparse.SUPPRESS)
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    return run_with(args, (Kind.PANOPTIC,), args.output_dir, panoptic_only_layout=True)
