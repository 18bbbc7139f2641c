"""`csconv prework`: the files cityscapesscripts' prework tools write (the work is in csconv/prework/)."""

from __future__ import annotations

import argparse
import os
import sys

from ..core.discover import parse_splits
from ..core.errors import CsconvError
from ..core.png import DEFAULT_MAX_PIXELS, parse_compress_level
from ..core.prework import DEFAULT_KINDS, Kind
from ..core.sources import FINE, parse_annotation_sets
from ..prework import PreworkSummary, prework
from . import registry
from .flags import bool_flag, positive_int, storage_options_flag
from .warning_lines import warnings_as_lines


def parse_kinds(text: str) -> tuple[Kind, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = {kind.value: kind for kind in Kind}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise CsconvError(
            f"--make takes a comma-separated list of {', '.join(known)}, got {text!r}"
        )
    return tuple(dict.fromkeys(known[name] for name in names))


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The flags `prework` and `eval-gt` share."""
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPU count)")
    parser.add_argument(
        "--png_compress_level", metavar="0-9",
        help="zlib level of the PNGs: faster (1) or smaller (9), the same pixels but other bytes than "
        "cityscapesscripts writes (default: Pillow's default settings, its bytes exactly)",
    )
    bool_flag(parser, "overwrite", False, "replace the files of this run that are already there")
    bool_flag(
        parser, "resume", False,
        "finish an interrupted run: keep the files its records prove complete (size and CRC32C), redo the rest",
    )
    parser.add_argument(
        "--max_pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
        help=f"refuse, before decoding, a PNG header or polygons JSON claiming more pixels than this "
        f"(a decompression bomb; default {DEFAULT_MAX_PIXELS:,}, Pillow's limit; a Cityscapes frame has 2,097,152)",
    )
    bool_flag(parser, "quiet", False, "no progress lines and no summary")
    storage_options_flag(parser)
    bool_flag(parser, "debug", False, "show tracebacks")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prework", help=registry.summary("prework"),
        description="Write the files cityscapesscripts' csCreateTrainIdLabelImgs, csCreatePanopticImgs "
        "--use-train-id and csCreatePanopticImgs write: for every gtFine/<split>/<city>/*_gtFine_polygons.json "
        "its *_gtFine_labelTrainIds.png beside it, and per split gtFine/cityscapes_panoptic_<split>_trainId.json "
        "+ gtFine/cityscapes_panoptic_<split>_trainId/ (trainId categories) and gtFine/cityscapes_panoptic_<split>.json "
        "+ its folder (original label ids), the same bytes; with --annotations coarse (or fine,coarse), also "
        "*_gtCoarse_labelTrainIds.png beside every gtCoarse/<split>/<city>/*_gtCoarse_polygons.json, as "
        "csCreateTrainIdLabelImgs does. Into the Cityscapes root, as cityscapesscripts does, "
        "or mirrored under --output_root. A file this run would write that is already there is refused unless "
        "--overwrite; --resume finishes an interrupted run. The root and --output_root may be URLs "
        "(gs://, s3://, memory://, ...).",
    )
    parser.add_argument(
        "--cityscapes_root", required=True,
        help="Cityscapes root holding gtFine/ (and gtCoarse/), or the folder holding gtFine_trainvaltest.zip "
        "(gtCoarse.zip) (then --output_root); a folder or a URL such as gs://bucket/cityscapes",
    )
    parser.add_argument(
        "--output_root",
        help="write under this folder or URL (gtFine/... as inside the root) instead of into the Cityscapes root",
    )
    parser.add_argument(
        "--annotations", default=FINE.name,
        help="comma-separated annotation sets: fine (gtFine/, default), coarse (gtCoarse/), or fine,coarse. "
        "labelTrainIds and instanceTrainIds are made for each; the panoptic outputs from gtFine alone, as "
        "cityscapesscripts makes them",
    )
    parser.add_argument(
        "--make",
        help=f"comma-separated outputs, of {', '.join(kind.value for kind in Kind)} (default: "
        f"{','.join(kind.value for kind in DEFAULT_KINDS)}, the tree DeepLab2's Cityscapes page shows; "
        "labelTrainIds with --annotations coarse alone). "
        "instanceTrainIds is what csCreateTrainIdInstanceImgs computes, saved as 16-bit PNG",
    )
    parser.add_argument(
        "--splits",
        help="comma-separated splits; one without the files an output is made from is an error, and one that "
        "no annotation set holds (default: those of train, val, test in gtFine/ and of train, val, train_extra "
        "in gtCoarse/, each for the outputs it has the files for)",
    )
    add_run_flags(parser)
    return parser


def run(args) -> int:
    kinds = None if args.make is None else parse_kinds(args.make)
    return run_with(args, kinds, args.output_root, annotations=parse_annotation_sets(args.annotations))


def run_with(args, kinds, output_root: str | None, panoptic_only_layout: bool = False, annotations=(FINE,)) -> int:
    """Run with the flags of add_run_flags() in `args`; kinds None: the default for the annotations."""
    splits = parse_splits(args.splits)
    compress_level = parse_compress_level(args.png_compress_level)
    with warnings_as_lines():
        summary = prework(
            args.cityscapes_root, output_root, kinds, splits, args.workers, args.overwrite, args.resume,
            compress_level, show_progress=not args.quiet, panoptic_only_layout=panoptic_only_layout,
            annotations=annotations, max_pixels=args.max_pixels, storage_options=args.storage_options,
        )
    if not args.quiet:
        print_summary(summary, output_root or args.cityscapes_root)
    return 0


def print_summary(summary: PreworkSummary, where: str) -> None:
    per_kind: dict[str, int] = {}
    for counts in summary.counts.values():
        for kind, count in counts.items():
            per_kind[kind] = per_kind.get(kind, 0) + count
    made = ", ".join(f"{kind} {count}" for kind, count in per_kind.items())
    rate = summary.frames / summary.seconds if summary.seconds else 0.0
    print(
        f"csconv: prework: {sum(per_kind.values())} files ({made}) in {where}; {summary.frames} frames made "
        f"in {summary.seconds:.1f} s ({rate:.1f} frames/s), {summary.bytes / 2**20:.1f} MiB written",
        file=sys.stderr,
    )
    if summary.kept:
        print(f"csconv: resumed: kept {summary.kept} file(s) an earlier run had completed, wrote {summary.written}",
              file=sys.stderr)
