"""The `csconv` command line: flag spelling, dispatch to one module per command, and the
one table that turns a command's exceptions into a message and an exit status.

Conversion is the default command: `csconv --cityscapes_root R --output_dir O` is
`csconv convert --cityscapes_root R --output_dir O`. The commands are listed in
registry.py; each is a thin shell over the public API or the modules behind it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Callable, NamedTuple

from .. import __version__
from ..core.errors import CsconvError
from ..pipeline.resume import RunInterrupted
from .flags import normalise_argv
from .registry import COMMANDS, DEFAULT_COMMAND, command_module, summary

__all__ = ["main", "script", "build_parser"]


class ErrorRow(NamedTuple):
    kind: type[BaseException]
    message: Callable[[BaseException], str]
    status: Callable[[BaseException], int]
    traceback_with_debug: bool  # --debug shows the traceback instead of the message


def _error_line(error: CsconvError) -> str:
    notes = "".join(f" ({note})" for note in getattr(error, "__notes__", ()))
    return f"csconv: error: {error}{notes}"


# What an exception leaving a command becomes; the first row whose type matches is used.
# Anything else is a bug in csconv and keeps its traceback.
ERRORS = (
    ErrorRow(CsconvError, _error_line, lambda error: 2, True),
    ErrorRow(RunInterrupted, lambda stopped: f"csconv: {stopped}", lambda stopped: 128 + stopped.signum, False),
    ErrorRow(KeyboardInterrupt, lambda _: "csconv: interrupted", lambda _: 128 + signal.SIGINT, False),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of the whole command line, with `command`'s flags; every other command
    is there by name and summary only, so that its module is not imported."""
    parser = argparse.ArgumentParser(
        prog="csconv",
        description="Convert Cityscapes into DeepLab2's sharded TFRecords (or another sink) in one command. "
        "Conversion is the default command: `csconv --cityscapes_root R --output_dir O` "
        "is `csconv convert --cityscapes_root R --output_dir O`.",
    )
    parser.add_argument("--version", action="version", version=f"csconv {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if name == command:
            command_module(name).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=summary(name), add_help=False)
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
        argv = [DEFAULT_COMMAND, *argv]
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
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit:  # --help, --version and usage errors exit from argparse
        sys.stdout.flush()
        raise
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return command_module(args.command).run(args)
    except tuple(row.kind for row in ERRORS) as error:
        row = next(row for row in ERRORS if isinstance(error, row.kind))
        if row.traceback_with_debug and getattr(args, "debug", False):
            raise
        print(row.message(error), file=sys.stderr)
        return row.status(error)
