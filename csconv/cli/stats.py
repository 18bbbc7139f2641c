"""`csconv stats` (the work is in csconv/inspection/stats.py)."""

from __future__ import annotations

import argparse
import sys

from ..core.discover import parse_splits
from ..inspection.stats import compute_stats, format_table, plot
from .. import storage
from . import registry
from .flags import storage_options_flag


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "stats", help=registry.summary("stats"),
        description="Read every record of a csconv output folder back (any sink) and print, per split, "
        "each train class's share of the label pixels (%, ignored pixels as 'ignore') and its number "
        "of instances (distinct instance ids > 0 per frame, summed; panoptic labels only). "
        "--plot also draws the shares as a bar chart PNG (Pillow only).",
    )
    parser.add_argument("output_dir", metavar="OUT", help="a csconv output folder (with csconv-manifest.json)")
    parser.add_argument("--splits", default=None, help="comma-separated splits (default: all in the manifest)")
    parser.add_argument("--plot", metavar="PNG", default=None, help="also write a bar chart of the pixel shares here")
    storage_options_flag(parser)
    return parser


def run(args) -> int:
    storage.configure(args.storage_options)
    splits = parse_splits(args.splits)
    all_stats = compute_stats(args.output_dir, splits)
    print(format_table(all_stats))
    if args.plot:
        plot(all_stats, args.plot)
        print(f"csconv: wrote {args.plot}", file=sys.stderr)
    return 0
