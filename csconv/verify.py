"""`csconv verify`: prove an output folder holds what its manifest says, record by record."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import zip_longest

from .core import png
from .core.errors import InputError
from .core.records import Sample
from .output import DIGESTS, file_digests
from .manifest import load as load_manifest
from .plugins import get_sink


@dataclass
class Report:
    output_dir: str
    sink: str = "?"
    shards: int = 0
    records: int = 0
    bytes: int = 0
    defects: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.defects


def _png_problem(data, what: str, height: int, width: int) -> str | None:
    try:
        info = png.inspect(data, what)
    except InputError as error:
        return f"{what} is not a valid PNG ({error.problem})"
    if (info.height, info.width) != (height, width):
        return f"{what} is {info.width}x{info.height} but the record says {width}x{height}"
    return None


def check_sample(sample: Sample) -> str | None:
    """What is wrong with one read-back sample, or None."""
    problem = _png_problem(sample.image, "image", sample.height, sample.width)
    if problem or sample.label is None:
        return problem
    if sample.label_format == "raw":
        shape = getattr(sample.label, "shape", None)
        if shape != (sample.height, sample.width):
            return f"raw label has shape {shape}, image is {sample.height}x{sample.width}"
        return None
    if sample.label_format == "png":
        return _png_problem(sample.label, "label", sample.height, sample.width)
    return f"unknown label format {sample.label_format!r}"


def verify(output_dir: str) -> Report:
    manifest = load_manifest(output_dir)
    report = Report(output_dir, sink=manifest.get("sink", "?"))
    sink = get_sink(report.sink)
    for split, info in manifest.get("splits", {}).items():
        for shard in info["shards"]:
            report.shards += 1
            _verify_shard(report, sink, output_dir, shard)
    return report


def _verify_shard(report: Report, sink, output_dir: str, shard: dict) -> None:
    name = shard["name"]
    path = os.path.join(output_dir, name)
    if not os.path.exists(path):
        report.defects.append(f"{name}: missing")
        return
    size = os.path.getsize(path)
    report.bytes += size
    if size != shard["bytes"]:
        report.defects.append(f"{name}: {size} bytes, the manifest says {shard['bytes']}")
    recorded = {digest: shard[digest] for digest in DIGESTS if digest in shard}
    for digest, value in file_digests(path, recorded).items():
        if value != recorded[digest]:
            report.defects.append(f"{name}: {digest.upper().replace('SHA', 'SHA-')} differs from the manifest")
    count = 0
    try:
        for count, sample in enumerate(sink.read_shard(path), start=1):
            problem = check_sample(sample)
            if problem:
                report.defects.append(f"{name}: record {count - 1} ({sample.filename}): {problem}")
    except Exception as error:  # any reader's failure is a defect of this shard, not a crash
        report.defects.append(f"{name}: record {count}: unreadable ({error.__class__.__name__}: {error})")
        return
    report.records += count
    if count != shard["records"]:
        report.defects.append(f"{name}: {count} records, the manifest says {shard['records']}")


def compare(first_dir: str, second_dir: str, limit: int = 20) -> list[str]:
    """Sample-by-sample differences between two outputs, whatever their sinks."""
    differences = []
    first, second = load_manifest(first_dir), load_manifest(second_dir)
    first_sink, second_sink = get_sink(first["sink"]), get_sink(second["sink"])
    splits = sorted(set(first["splits"]) | set(second["splits"]))
    for split in splits:
        a_shards = first["splits"].get(split, {}).get("shards", [])
        b_shards = second["splits"].get(split, {}).get("shards", [])
        if len(a_shards) != len(b_shards):
            differences.append(f"{split}: {len(a_shards)} shards vs {len(b_shards)}")
            continue
        for a, b in zip(a_shards, b_shards):
            a_samples = first_sink.read_shard(os.path.join(first_dir, a["name"]))
            b_samples = second_sink.read_shard(os.path.join(second_dir, b["name"]))
            for index, (x, y) in enumerate(zip_longest(a_samples, b_samples)):
                if x != y:
                    what = _difference(x, y)
                    differences.append(f"{a['name']} vs {b['name']}: record {index}: {what}")
                    if len(differences) >= limit:
                        return differences
    return differences


def _difference(x: Sample | None, y: Sample | None) -> str:
    if x is None or y is None:
        return "present in only one output"
    for name in ("filename", "height", "width", "channels", "image_format", "label_format", "image"):
        if getattr(x, name) != getattr(y, name):
            return f"{name} differs ({x.filename})"
    return f"label differs ({x.filename})"


def format_report(report: Report) -> str:
    lines = [
        f"{report.output_dir}: {report.sink} sink, {report.shards} shards, {report.records} records, "
        f"{report.bytes / 2**20:.1f} MiB",
    ]
    if report.ok:
        lines.append("OK: every shard matches the manifest and every record parses")
    else:
        lines.append(f"FAILED: {len(report.defects)} defect(s)")
        lines += [f"  {d}" for d in report.defects[:20]]
        if len(report.defects) > 20:
            lines.append(f"  ... and {len(report.defects) - 20} more")
    return "\n".join(lines)
