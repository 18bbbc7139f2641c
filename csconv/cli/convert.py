"""`csconv convert` (the default command): a Cityscapes root into sharded output of a sink."""

from __future__ import annotations

import argparse
import os
import sys

from ..core.discover import parse_splits
from ..core.png import DEFAULT_MAX_PIXELS, parse_compress_level
from ..core.records import ConvertOptions, Source, Task
from ..core.sources import ANNOTATION_SETS, FINE
from .flags import bool_flag, positive_int, storage_options_flag
from . import registry
from .warning_lines import warnings_as_lines


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("convert", help=registry.summary("convert"))
    parser.add_argument(
        "--cityscapes_root",
        help="Cityscapes root holding leftImg8bit/ and gtFine/ (gtCoarse/ for --annotations coarse), or a folder "
        "holding the official gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip (gtCoarse.zip and "
        "leftImg8bit_trainvaltest.zip and/or leftImg8bit_trainextra.zip) (read in place, never unpacked)",
    )
    parser.add_argument("--gtfine_zip", help="the gtFine_trainvaltest.zip archive (with --images_zip, instead of --cityscapes_root)")
    parser.add_argument("--images_zip", help="the leftImg8bit_trainvaltest.zip archive")
    parser.add_argument(
        "--gtcoarse_zip",
        help="the gtCoarse.zip archive (--annotations coarse; with --images_zip and/or --extra_images_zip, "
        "instead of --cityscapes_root)",
    )
    parser.add_argument("--extra_images_zip", help="the leftImg8bit_trainextra.zip archive (train_extra's images)")
    parser.add_argument("--output_dir", required=True, help="folder for the shards and csconv-manifest.json")
    parser.add_argument("--sink", default="tfrecord", help="output format (see `csconv sinks`; default tfrecord)")
    bool_flag(parser, "create_panoptic_data", True, "panoptic labels (int32 raw); false: semantic trainId PNGs")
    bool_flag(parser, "treat_crowd_as_ignore", True, "crowd regions of thing classes get the ignore label 255")
    parser.add_argument(
        "--splits",
        help="comma-separated splits to convert; a named split that is missing is an error "
        "(default: those of train,val,test the input holds; coarse annotations: train,val,train_extra)",
    )
    parser.add_argument(
        "--annotations", choices=[name for name in ANNOTATION_SETS], default=FINE.name,
        help="fine: labels from gtFine (default); coarse: from gtCoarse, semantic labels only "
        "(--create_panoptic_data=false), for its splits train, val and train_extra (images in "
        "leftImg8bit/train_extra/ or leftImg8bit_trainextra.zip)",
    )
    parser.add_argument(
        "--source", choices=[s.value for s in Source], default=Source.RAW.value,
        help="raw: labels straight from the official download (default); prepared: from the "
        "cityscapesscripts prework outputs; labelids: semantic labels remapped from *_labelIds.png "
        "(fast, but differs from the reference along polygon edges)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPU count)")
    parser.add_argument("--num_shards", type=int, default=10, help="shards per split (default 10, as DeepLab2)")
    parser.add_argument("--label_divisor", type=int, default=1000, help="panoptic id = semantic * divisor + instance")
    parser.add_argument(
        "--png_compress_level", metavar="0-9",
        help="zlib level of the semantic label PNGs: faster (1) or smaller (9), the same pixels but other "
        "bytes than the reference stores (default: Pillow's default settings, the reference's bytes)",
    )
    bool_flag(parser, "strict_sizes", False, "refuse splits whose size differs from the official one, as DeepLab2 does")
    bool_flag(parser, "overwrite", False, "replace csconv output files already in --output_dir (only csconv's own)")
    bool_flag(
        parser, "resume", False,
        "finish an interrupted run in --output_dir: keep the shards proven complete (size, checksums, "
        "same sink, options and input frames), redo the rest",
    )
    bool_flag(
        parser, "keep_going", False,
        "on a bad input frame, leave it out of its shard, list it in the manifest and the summary, "
        "convert the rest and exit 1",
    )
    bool_flag(
        parser, "decode_check", False,
        "fully decode every input PNG (catches damage inside compressed data whose CRCs match; slower)",
    )
    parser.add_argument(
        "--max_pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
        help=f"refuse, before decoding, an image or label whose PNG header claims more pixels than this "
        f"(a decompression bomb; default {DEFAULT_MAX_PIXELS:,}, Pillow's limit; a Cityscapes frame has 2,097,152)",
    )
    bool_flag(
        parser, "sha256", False,
        "also record each shard's SHA-256 in the manifest (sha256sum-checkable; costs about a third "
        "more CPU on panoptic output, so the default is CRC32C only)",
    )
    bool_flag(parser, "quiet", False, "no progress lines and no summary")
    storage_options_flag(parser)
    bool_flag(parser, "debug", False, "show tracebacks")
    return parser


def options_from_args(args) -> ConvertOptions:
    return ConvertOptions(
        task=Task.PANOPTIC if args.create_panoptic_data else Task.SEMANTIC,
        source=Source(args.source),
        treat_crowd_as_ignore=args.treat_crowd_as_ignore,
        label_divisor=args.label_divisor,
        png_compress_level=parse_compress_level(args.png_compress_level),
        annotations=args.annotations,
    )


def run(args) -> int:
    from ..pipeline.convert import convert

    splits = parse_splits(args.splits)
    with warnings_as_lines():
        summary = convert(
            root=args.cityscapes_root,
            gtfine_zip=args.gtfine_zip,
            images_zip=args.images_zip,
            gtcoarse_zip=args.gtcoarse_zip,
            extra_images_zip=args.extra_images_zip,
            output_dir=args.output_dir,
            sink_name=args.sink,
            splits=splits,
            options=options_from_args(args),
            num_shards=args.num_shards,
            workers=args.workers,
            strict_sizes=args.strict_sizes,
            overwrite=args.overwrite,
            show_progress=not args.quiet,
            resume_run=args.resume,
            keep_going=args.keep_going,
            decode_check=args.decode_check,
            sha256=args.sha256,
            max_pixels=args.max_pixels,
            storage_options=args.storage_options,
        )
    if not args.quiet:
        print_summary(summary, args.output_dir)
    if summary.skipped:
        # Printed even with --quiet: a skipped frame is never silent.
        print_skipped(summary)
        return 1
    return 0


def print_summary(summary, output_dir: str) -> None:
    written = [s for s in summary.shards if not s.kept]
    records = sum(s.records for s in written)
    rate = records / summary.seconds if summary.seconds else 0.0
    per_split = ", ".join(f"{split} {count}" for split, count in summary.splits.items())
    print(
        f"csconv: wrote {summary.records} records ({per_split}) in {len(summary.shards)} shards, "
        f"{summary.bytes / 2**20:.1f} MiB, in {summary.seconds:.1f} s ({rate:.1f} frames/s) to {output_dir}",
        file=sys.stderr,
    )
    if summary.kept:
        print(
            f"csconv: resumed: kept {summary.kept} shard(s) an earlier run had completed, wrote {len(written)}",
            file=sys.stderr,
        )


def print_skipped(summary) -> None:
    skipped = summary.skipped
    print(f"csconv: skipped {len(skipped)} bad frame(s) (--keep_going; listed in the manifest):", file=sys.stderr)
    for frame in skipped:
        print(f"csconv: skipped {frame.split} frame {frame.index} ({frame.shard}): {frame.path}: {frame.reason}",
              file=sys.stderr)
