"""csconv-manifest.json: what a finished run wrote, read back by verify, preview, stats and --resume."""

from __future__ import annotations

import json

from .. import __version__, storage
from . import resume
from ..core.errors import CsconvError

MANIFEST_NAME = "csconv-manifest.json"


def load(output_dir: str) -> dict:
    path = storage.join(output_dir, MANIFEST_NAME)
    try:
        return json.loads(storage.read_bytes(path))
    except FileNotFoundError:
        raise CsconvError(f"{path}: no manifest; is {output_dir} a csconv output folder?") from None
    except ValueError as error:
        raise CsconvError(f"{path}: unreadable manifest ({error})") from None


def shard_entries(output_dir: str) -> dict[str, dict]:
    """Shard entries of an existing manifest, by name ({} when there is none or it is unreadable)."""
    try:
        manifest = load(output_dir)
        entries = {
            s["name"]: {**s, "split": split, "index": index, "skipped": []}
            for split, info in manifest["splits"].items()
            for index, s in enumerate(info["shards"])
            if "/" not in s["name"] and "\\" not in s["name"] and not s["name"].startswith(".")
        }
        for skipped in manifest.get("skipped", ()):
            if skipped.get("shard") in entries:
                entries[skipped["shard"]]["skipped"].append(skipped)
        return entries
    except (CsconvError, OSError, KeyError, TypeError, AttributeError):
        return {}


def write(output_dir: str, sink_name: str, options, summary, num_shards: int) -> None:
    """Deterministic: the same run gives the same bytes, whatever --workers or --resume."""
    manifest = {
        "csconv_version": __version__,
        "sink": sink_name,
        "options": resume.options_dict(options),
        "num_shards": num_shards,
        "splits": {
            split: {
                "records": sum(s.records for s in summary.shards if s.split == split),
                "frames": count,
                "shards": [
                    {
                        "name": s.name, "records": s.records, "bytes": s.bytes, **s.digests,
                        "fingerprint": s.fingerprint,
                    }
                    for s in summary.shards
                    if s.split == split
                ],
            }
            for split, count in summary.splits.items()
        },
        # --keep_going: frames left out of their shard (index = position in the split).
        "skipped": [skipped.__dict__ for skipped in summary.skipped],
    }
    storage.write_atomically(storage.join(output_dir, MANIFEST_NAME), (json.dumps(manifest, indent=2) + "\n").encode())
