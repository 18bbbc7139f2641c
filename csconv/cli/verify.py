"""`csconv verify`: an output folder against its manifest, and optionally against another output."""

from __future__ import annotations

import argparse

from . import registry
from ..core.png import DEFAULT_MAX_PIXELS
from .flags import bool_flag, positive_int, storage_options_flag


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "verify", help=registry.summary("verify"),
        description="Check OUTPUT_DIR: every shard its manifest lists (size, checksums, framing, every record "
        "parses, label sizes), and no shard file it does not list. With --against, also compare it sample by "
        "sample, on parsed features, with another output: csconv's of any sink, or DeepLab2's own folder of "
        "<split>-0000k-of-0000N.tfrecord shards (no manifest needed). The first differences are named by split, "
        "shard, record and feature (for a label: how many pixels differ, the first position and both values). "
        "Exit 0 when all is well, 1 on any defect or difference.",
    )
    parser.add_argument("output_dir", help="a csconv output folder (or DeepLab2's own TFRecord folder)")
    parser.add_argument(
        "--against", help="also compare every sample with this other output folder (csconv's or DeepLab2's own)"
    )
    parser.add_argument(
        "--max_pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
        help=f"a stored PNG whose header claims more pixels than this is a defect, and is never decoded "
        f"(default {DEFAULT_MAX_PIXELS:,}, as for conversion: pass the value the output was converted with)",
    )
    storage_options_flag(parser)
    bool_flag(parser, "debug", False, "show tracebacks")
    return parser


def run(args) -> int:
    from .. import storage
    from ..core.png import set_max_pixels

    storage.configure(args.storage_options)
    previous = set_max_pixels(args.max_pixels)
    try:
        return _check(args)
    finally:
        set_max_pixels(previous)  # main() may run in a process that goes on (the tests, the API)


def _check(args) -> int:
    from ..inspection.verify import compare, format_report, verify

    report = verify(args.output_dir)
    print(format_report(report))
    ok = report.ok
    if args.against:
        comparison = compare(args.output_dir, args.against)
        if comparison.ok:
            print(comparison.summary())
        else:
            ok = False
            count = len(comparison.differences)
            shown = f"the first {count} differences (stopped there)" if comparison.stopped else f"{count} difference(s)"
            print(f"DIFFERS from {args.against}: {shown}")
            for line in comparison.differences:
                print(f"  {line}")
    return 0 if ok else 1
