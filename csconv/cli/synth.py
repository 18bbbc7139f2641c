"""`csconv synth`: the deterministic synthetic Cityscapes generator."""

from __future__ import annotations

import argparse
import time

from . import registry
from .flags import bool_flag


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("synth", help=registry.summary("synth"))
    parser.add_argument("--root", required=True, help="folder to create the tree in")
    parser.add_argument("--train", type=int, default=3)
    parser.add_argument("--val", type=int, default=2)
    parser.add_argument("--test", type=int, default=2)
    parser.add_argument("--train_extra", type=int, default=0, help="frames of the coarse-only extra split (default 0)")
    bool_flag(parser, "coarse", False, "also write gtCoarse/ for train and val")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run(args) -> int:
    from ..synthetic import generate_dataset

    started = time.monotonic()
    sizes = {"train": args.train, "val": args.val, "test": args.test, "train_extra": args.train_extra}
    paths = generate_dataset(
        args.root, {k: v for k, v in sizes.items() if v > 0}, width=args.width, height=args.height, seed=args.seed,
        write_color=True, coarse=args.coarse,
    )
    print(f"csconv: generated {len(paths)} synthetic frames in {args.root} in {time.monotonic() - started:.1f} s")
    return 0
