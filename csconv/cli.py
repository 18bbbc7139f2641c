"""The `csconv` command line. Conversion is the default action.

Flags follow absl conventions as well, so DeepLab2's own command line works verbatim:
`--create_panoptic_data=false`, `--nocreate_panoptic_data`, and dashed spellings.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
import warnings
from contextlib import contextmanager

from . import __version__
from .core.discover import parse_splits
from .core.errors import CsconvError
from .core.png import DEFAULT_MAX_PIXELS, parse_compress_level
from .resume import RunInterrupted
from .core.records import ConvertOptions, Source, Task

BOOLEAN_FLAGS = {
    "create_panoptic_data", "treat_crowd_as_ignore", "strict_sizes", "overwrite", "debug", "quiet",
    "resume", "keep_going", "decode_check", "sha256",
}
# Commands that live in modules of their own: each offers add_parser(subparsers) and run(args).
EXTRA_COMMAND_MODULES = {
    "prework": "prework", "eval-gt": "evalgt", "to-evalid": "evalid", "preview": "preview", "stats": "stats",
}
COMMANDS = {"convert", "sinks", "demo", "synth", "verify", *EXTRA_COMMAND_MODULES}
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def normalise_argv(argv: list[str]) -> list[str]:
    """Rewrite absl-style and dashed flags into the one spelling argparse is given."""
    out = []
    for token in argv:
        if not token.startswith("--") or token == "--":
            out.append(token)
            continue
        name, eq, value = token[2:].partition("=")
        name = name.replace("-", "_")
        if name in BOOLEAN_FLAGS:
            out.append(f"--{name}={value if eq else 'true'}")
        elif not eq and name.startswith("no") and name[2:].lstrip("_") in BOOLEAN_FLAGS:
            out.append(f"--{name[2:].lstrip('_')}=false")
        else:
            out.append(f"--{name}{eq}{value}")
    return out


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return value


def bool_flag(parser, name: str, default: bool, help_text: str) -> None:
    parser.add_argument(
        f"--{name}", type=parse_bool, nargs="?", const=True, default=default, metavar="BOOL",
        help=f"{help_text} (default {str(default).lower()}; also --{name}, --no{name})",
    )


def _add_conversion_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cityscapes_root",
        help="Cityscapes root holding leftImg8bit/ and gtFine/, or a folder holding the official "
        "gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip (read in place, never unpacked)",
    )
    parser.add_argument("--gtfine_zip", help="the gtFine_trainvaltest.zip archive (with --images_zip, instead of --cityscapes_root)")
    parser.add_argument("--images_zip", help="the leftImg8bit_trainvaltest.zip archive")
    parser.add_argument("--output_dir", required=True, help="folder for the shards and csconv-manifest.json")
    parser.add_argument("--sink", default="tfrecord", help="output format (see `csconv sinks`; default tfrecord)")
    bool_flag(parser, "create_panoptic_data", True, "panoptic labels (int32 raw); false: semantic trainId PNGs")
    bool_flag(parser, "treat_crowd_as_ignore", True, "crowd regions of thing classes get the ignore label 255")
    parser.add_argument(
        "--splits",
        help="comma-separated splits to convert; a named split that is missing is an error "
        "(default: those of train,val,test the input holds)",
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
        "--max_pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
        help=f"refuse, before decoding, an image or label whose PNG header claims more pixels than this "
        f"(a decompression bomb; default {DEFAULT_MAX_PIXELS:,}, Pillow's limit; a Cityscapes frame has 2,097,152)",
    )
    bool_flag(
        parser, "sha256", False,
        "also record each shard's SHA-256 in the manifest (sha256sum-checkable; costs about a third "
        "more CPU on panoptic output, so the default is CRC32C only)",
    )
    bool_flag(parser, "quiet", False, "no progress lines and no summary")
    bool_flag(parser, "debug", False, "show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csconv",
        description="Convert Cityscapes into DeepLab2's sharded TFRecords (or another sink) in one command. "
        "Conversion is the default command: `csconv --cityscapes_root R --output_dir O` "
        "is `csconv convert --cityscapes_root R --output_dir O`.",
    )
    parser.add_argument("--version", action="version", version=f"csconv {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    convert = commands.add_parser("convert", help="convert a Cityscapes root (the default command)")
    _add_conversion_flags(convert)

    commands.add_parser("sinks", help="list the registered sinks and the plugin providing each")

    demo = commands.add_parser("demo", help="make a small synthetic Cityscapes set, convert it with every sink, read it back")
    demo.add_argument("directory", nargs="?", default="csconv-demo", help="where to put it (default ./csconv-demo)")
    demo.add_argument("--width", type=int, default=512)
    demo.add_argument("--height", type=int, default=256)
    demo.add_argument("--workers", type=int, default=os.cpu_count() or 1)

    verify = commands.add_parser(
        "verify", help="check an output folder against its manifest, record by record",
        description="Check OUTPUT_DIR: every shard its manifest lists (size, checksums, framing, every record "
        "parses, label sizes), and no shard file it does not list. With --against, also compare it sample by "
        "sample, on parsed features, with another output: csconv's of any sink, or DeepLab2's own folder of "
        "<split>-0000k-of-0000N.tfrecord shards (no manifest needed). The first differences are named by split, "
        "shard, record and feature (for a label: how many pixels differ, the first position and both values). "
        "Exit 0 when all is well, 1 on any defect or difference.",
    )
    verify.add_argument("output_dir", help="a csconv output folder (or DeepLab2's own TFRecord folder)")
    verify.add_argument(
        "--against", help="also compare every sample with this other output folder (csconv's or DeepLab2's own)"
    )
    bool_flag(verify, "debug", False, "show tracebacks")

    synth = commands.add_parser("synth", help="generate a deterministic synthetic Cityscapes tree")
    synth.add_argument("--root", required=True, help="folder to create the tree in")
    synth.add_argument("--train", type=int, default=3)
    synth.add_argument("--val", type=int, default=2)
    synth.add_argument("--test", type=int, default=2)
    synth.add_argument("--width", type=int, default=2048)
    synth.add_argument("--height", type=int, default=1024)
    synth.add_argument("--seed", type=int, default=0)

    for module_name in EXTRA_COMMAND_MODULES.values():
        importlib.import_module(f"{__package__}.{module_name}").add_parser(commands)
    return parser


def script() -> None:
    """The `csconv` command (and `python -m csconv`): main(), then exit with its code.

    A run stopped by a signal or by a dead worker has already removed its temporary
    files when main() returns, but a worker killed while sending its result leaves the
    process pool's thread waiting for the rest of that message, and the interpreter
    joins that thread at exit: for ever. Such runs leave without the interpreter's exit
    hooks, once the output streams are flushed.
    """
    code = main()
    if code in (2, 128 + signal.SIGINT, 128 + signal.SIGTERM):  # error, interrupted
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = normalise_argv(list(sys.argv[1:] if argv is None else argv))
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        argv = ["convert", *argv]
    try:
        status = _main(argv)
        # Buffered output meets the closed pipe only here, not in the handler's print().
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # `csconv stats OUT | head`: the reader has gone, as for any Unix tool. Python would
        # flush stdout again at exit and print a traceback; point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # killed by SIGPIPE, as the shell reports `cat big | head`


def _main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:  # --help, --version and usage errors exit from argparse
        sys.stdout.flush()
        raise
    if args.command is None:
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False)
    try:
        handler = COMMAND_HANDLERS.get(args.command) or args.run
        return handler(args)
    except CsconvError as error:
        if debug:
            raise
        notes = "".join(f" ({note})" for note in getattr(error, "__notes__", ()))
        print(f"csconv: error: {error}{notes}", file=sys.stderr)
        return 2
    except RunInterrupted as stopped:
        print(f"csconv: {stopped}", file=sys.stderr)
        return 128 + stopped.signum
    except KeyboardInterrupt:
        print("csconv: interrupted", file=sys.stderr)
        return 130


def options_from_args(args) -> ConvertOptions:
    return ConvertOptions(
        task=Task.PANOPTIC if args.create_panoptic_data else Task.SEMANTIC,
        source=Source(args.source),
        treat_crowd_as_ignore=args.treat_crowd_as_ignore,
        label_divisor=args.label_divisor,
        png_compress_level=parse_compress_level(args.png_compress_level),
    )


def run_convert(args) -> int:
    from .convert import convert

    splits = parse_splits(args.splits)
    with warnings_as_lines():
        summary = convert(
            root=args.cityscapes_root,
            gtfine_zip=args.gtfine_zip,
            images_zip=args.images_zip,
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
        )
    if not args.quiet:
        print_summary(summary, args.output_dir)
    if summary.skipped:
        # Printed even with --quiet: a skipped frame is never silent.
        print_skipped(summary)
        return 1
    return 0


@contextmanager
def warnings_as_lines():
    """Every warning raised in the block as one line `csconv: warning: ...` on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        yield


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"csconv: warning: {message}", file=sys.stderr)


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


def run_verify(args) -> int:
    from .verify import compare, format_report, verify

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


def run_sinks(args) -> int:
    from .plugins import sinks

    for entry in sinks().values():
        missing = entry.sink_class.missing_requirement()
        note = f"  (unavailable: {missing})" if missing else ""
        print(f"{entry.name:<12} {entry.sink_class.description}  [{entry.origin}: {entry.plugin}]{note}")
    return 0


def run_synth(args) -> int:
    from .synthetic import generate_dataset

    started = time.monotonic()
    sizes = {"train": args.train, "val": args.val, "test": args.test}
    paths = generate_dataset(
        args.root, {k: v for k, v in sizes.items() if v > 0}, width=args.width, height=args.height, seed=args.seed,
        write_color=True,
    )
    print(f"csconv: generated {len(paths)} synthetic frames in {args.root} in {time.monotonic() - started:.1f} s")
    return 0


def run_demo(args) -> int:
    from .demo import demo

    return demo(args.directory, width=args.width, height=args.height, workers=args.workers)


COMMAND_HANDLERS = {
    "convert": run_convert, "sinks": run_sinks, "synth": run_synth, "demo": run_demo, "verify": run_verify,
}
