"""Flag spelling shared by every command.

Flags follow absl conventions as well, so DeepLab2's own command line works verbatim:
`--create_panoptic_data=false`, `--nocreate_panoptic_data`, and dashed spellings.
"""

from __future__ import annotations

import argparse
import json

# Every command's boolean flags: normalise_argv() runs before the command is known.
BOOLEAN_FLAGS = {
    "create_panoptic_data", "treat_crowd_as_ignore", "strict_sizes", "overwrite", "debug", "quiet",
    "resume", "keep_going", "decode_check", "sha256", "coarse",
}
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


def positive_int(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return value


def storage_options(text: str) -> dict:
    try:
        options = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error})") from None
    if not isinstance(options, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, such as '{\"anon\": true}'")
    return options


def storage_options_flag(parser) -> None:
    parser.add_argument(
        "--storage_options", type=storage_options, default=None, metavar="JSON",
        help="options for the filesystem of every gs://, s3://, ... URL, as a JSON object (for example "
        "'{\"anon\": true}' or '{\"endpoint_url\": \"http://...\"}'); credentials and endpoints otherwise "
        "come from each library's usual environment and configuration files",
    )


def bool_flag(parser, name: str, default: bool, help_text: str) -> None:
    parser.add_argument(
        f"--{name}", type=parse_bool, nargs="?", const=True, default=default, metavar="BOOL",
        help=f"{help_text} (default {str(default).lower()}; also --{name}, --no{name})",
    )
