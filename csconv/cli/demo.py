"""`csconv demo`: the whole job, end to end, on a small synthetic Cityscapes set."""

from __future__ import annotations

import argparse
import glob
import os
import time
import warnings

from ..core.records import ConvertOptions
from ..inspection.preview import iter_split
from ..pipeline.convert import SplitSizeWarning, convert
from ..plugins import sinks
from . import registry

DEMO_SPLITS = {"train": 6, "val": 4, "test": 3}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("demo", help=registry.summary("demo"))
    parser.add_argument("directory", nargs="?", default="csconv-demo", help="where to put it (default ./csconv-demo)")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    return parser


def run(args) -> int:
    return demo(args.directory, width=args.width, height=args.height, workers=args.workers)


def read_back(output_dir: str) -> list:
    """Every sample of the output, found through its manifest, whatever the sink."""
    return [sample for split in DEMO_SPLITS for sample in iter_split(output_dir, split)]


def demo(directory: str, width: int = 512, height: int = 256, workers: int = 1) -> int:
    from ..synthetic import generate_dataset

    root = os.path.join(directory, "cityscapes")
    started = time.monotonic()
    if not glob.glob(os.path.join(root, "leftImg8bit", "*", "*", "*.png")):
        generate_dataset(root, DEMO_SPLITS, width=width, height=height, write_color=True)
    print(f"synthetic Cityscapes: {sum(DEMO_SPLITS.values())} frames of {width}x{height} in {root} "
          f"({time.monotonic() - started:.1f} s)")

    reference = None
    for name, entry in sinks().items():
        missing = entry.sink_class.missing_requirement()
        if missing:
            print(f"{name:<12} skipped: {missing}")
            continue
        output_dir = os.path.join(directory, name)
        with warnings.catch_warnings():
            # A demo set is small on purpose; the warning is for real data.
            warnings.simplefilter("ignore", SplitSizeWarning)
            summary = convert(root, output_dir, sink_name=name, options=ConvertOptions(), workers=workers,
                              overwrite=True, show_progress=False)
        samples = read_back(output_dir)
        if reference is None:
            reference = samples
        same = samples == reference
        print(f"{name:<12} {summary.records} records in {len(summary.shards)} shards, "
              f"{summary.bytes / 2**20:.1f} MiB, {summary.seconds:.2f} s -> {output_dir}; "
              f"read back {len(samples)} samples, {'identical to' if same else 'DIFFERENT from'} the tfrecord reference")
        if not same:
            return 1
    first = reference[0]
    print(f"first record: {first.split}/{first.filename}, {first.width}x{first.height}, "
          f"label {first.label_format} {getattr(first.label, 'shape', None)}")
    tfrecords = os.path.join(directory, "tfrecord")
    print(f"next: csconv verify {tfrecords}; csconv preview {tfrecords} --split val --index 0 -o frame.png; "
          f"csconv stats {tfrecords}")
    return 0
