"""`csconv sinks`: the registered sinks, the plugin behind each, and what an unavailable one needs."""

from __future__ import annotations

import argparse

from . import registry


def add_parser(subparsers) -> argparse.ArgumentParser:
    return subparsers.add_parser("sinks", help=registry.summary("sinks"))


def run(args) -> int:
    from ..plugins import sinks

    for entry in sinks().values():
        missing = entry.sink_class.missing_requirement()
        note = f"  (unavailable: {missing})" if missing else ""
        print(f"{entry.name:<12} {entry.sink_class.description}  [{entry.origin}: {entry.plugin}]{note}")
    return 0
