"""`csconv verify`: prove an output folder holds what its manifest says, record by record,
and compare two outputs sample by sample.

Either folder of a comparison may be csconv's (any sink; its manifest says where the
shards are) or DeepLab2's own (`<split>-0000k-of-0000N.tfrecord` files and nothing else:
the shards are found by name). Records are compared on their parsed features, never on
their bytes: TensorFlow's protobuf writes an Example's feature map in an order that
changes from run to run, so equal records need not be equal bytes.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import zip_longest

import numpy as np

from ..core import png
from ..core.errors import CsconvError, InputError
from ..core.records import Sample
from ..pipeline.manifest import MANIFEST_NAME
from ..pipeline.manifest import load as load_manifest
from .. import storage
from ..storage import DIGESTS
from ..plugins import get_sink
from ..sinks import tfrecord, tfrecord_format
from ..sinks.base import Sink

# DeepLab2's shard names; the split is everything before the first dash, as for every sink.
DEEPLAB2_SHARD = re.compile(r"(?P<split>\w+)-(?P<index>\d+)-of-(?P<count>\d+)\.tfrecord")


@dataclass
class Output:
    """Where the shards of one output folder are, and what wrote them."""

    folder: str
    sink: Sink
    sink_name: str
    splits: dict[str, list[dict]]  # split -> its shard entries in order, each at least {"name": ...}
    has_manifest: bool
    problems: list[str] = field(default_factory=list)  # found while laying the folder out


def open_output(folder: str) -> Output:
    """A csconv output (by its manifest) or DeepLab2's own TFRecords (by file name)."""
    if not storage.is_dir(folder):
        raise CsconvError(f"{folder}: not a folder")
    if storage.is_file(storage.join(folder, MANIFEST_NAME)):
        manifest = load_manifest(folder)
        sink_name = manifest.get("sink", "?")
        splits = {split: list(info["shards"]) for split, info in manifest.get("splits", {}).items()}
        return Output(folder, get_sink(sink_name), sink_name, splits, has_manifest=True)
    return _deeplab2_output(folder)


def _deeplab2_output(folder: str) -> Output:
    found: dict[str, dict[int, dict[int, str]]] = {}  # split -> shard count -> index -> name
    for name in storage.list_names(folder):
        match = DEEPLAB2_SHARD.fullmatch(name)
        # In a bucket a listed name ending in .tfrecord is an object: no request per name.
        if match and (storage.is_url(folder) or os.path.isfile(os.path.join(folder, name))):
            counts = found.setdefault(match["split"], {})
            counts.setdefault(int(match["count"]), {})[int(match["index"])] = name
    if not found:
        raise CsconvError(
            f"{folder}: neither a csconv output (no {MANIFEST_NAME}) nor DeepLab2's "
            "(no <split>-0000k-of-0000N.tfrecord shards)"
        )
    splits, problems = {}, []
    for split, counts in sorted(found.items()):
        # Files of another shard count are most likely left over from an earlier run:
        # the layout most files agree on is the output, the rest are reported.
        count = max(counts, key=lambda c: (len(counts[c]), c))
        for other, names in sorted(counts.items()):
            if other != count:
                problems += [f"{name}: not one of the {split} split's {count} shards" for name in names.values()]
        names = counts[count]
        problems += [f"{names[i]}: index beyond the shard count" for i in sorted(names) if i >= count]
        splits[split] = [{"name": names.get(i, f"{split}-{i:05d}-of-{count:05d}.tfrecord")} for i in range(count)]
    return Output(folder, tfrecord.TFRecordSink(), "tfrecord", splits, has_manifest=False, problems=problems)


# --- verify: one output on its own -------------------------------------------------------

@dataclass
class Report:
    output_dir: str
    sink: str = "?"
    shards: int = 0
    records: int = 0
    bytes: int = 0
    has_manifest: bool = True
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
    output = open_output(output_dir)
    report = Report(output_dir, sink=output.sink_name, has_manifest=output.has_manifest)
    report.defects += output.problems
    if output.has_manifest:
        report.defects += unlisted_shards(output)
    for shards in output.splits.values():
        for shard in shards:
            report.shards += 1
            _verify_shard(report, output.sink, output_dir, shard)
    return report


def unlisted_shards(output: Output) -> list[str]:
    """Shard files in the folder its manifest does not list, e.g. left from a run with another --num_shards."""
    listed = {shard["name"] for shards in output.splits.values() for shard in shards}
    return [
        f"{name}: a {output.sink_name} shard file the manifest does not list (left over from another run?)"
        for name in storage.list_names(output.folder)
        if name not in listed and output.sink.is_shard_name(name)
    ]


def _verify_shard(report: Report, sink, output_dir: str, shard: dict) -> None:
    name = shard["name"]
    size = storage.file_size(storage.join(output_dir, name))
    if size is None:
        report.defects.append(f"{name}: missing")
        return
    # An object is read once, into a local copy, for both its checksums and its records.
    with storage.local_copy(storage.join(output_dir, name)) as path:
        _verify_shard_file(report, sink, name, path, size, shard)


def _verify_shard_file(report: Report, sink, name: str, path: str, size: int, shard: dict) -> None:
    report.bytes += size
    if "bytes" in shard and size != shard["bytes"]:
        report.defects.append(f"{name}: {size} bytes, the manifest says {shard['bytes']}")
    recorded = {digest: shard[digest] for digest in DIGESTS if digest in shard}
    for digest, value in storage.file_digests(path, recorded).items():
        if value != recorded[digest]:
            report.defects.append(f"{name}: {digest.upper().replace('SHA', 'SHA-')} differs from the manifest")
    count = 0
    try:
        for count, sample in enumerate(sink.read_shard(path), start=1):
            problem = check_sample(sample)
            if problem:
                report.defects.append(f"{name}: record {count - 1} ({sample.filename}): {problem}")
    except InputError as error:  # the sink's own words: which record, what is wrong
        report.defects.append(f"{name}: {error.problem}")
        return
    except Exception as error:  # any other reader's failure (a third-party sink) is a defect too, not a crash
        report.defects.append(f"{name}: record {count}: unreadable ({error.__class__.__name__}: {error})")
        return
    report.records += count
    if "records" in shard and count != shard["records"]:
        report.defects.append(f"{name}: {count} records, the manifest says {shard['records']}")


def format_report(report: Report) -> str:
    kind = f"{report.sink} sink" if report.has_manifest else "no manifest, DeepLab2-style TFRecords"
    lines = [
        f"{report.output_dir}: {kind}, {report.shards} shards, {report.records} records, "
        f"{report.bytes / 2**20:.1f} MiB",
    ]
    if report.ok and report.has_manifest:
        lines.append("OK: every shard matches the manifest and every record parses")
    elif report.ok:
        lines.append("OK: every record parses (no manifest to check sizes and checksums against)")
    else:
        lines.append(f"FAILED: {len(report.defects)} defect(s)")
        lines += [f"  {d}" for d in report.defects[:20]]
        if len(report.defects) > 20:
            lines.append(f"  ... and {len(report.defects) - 20} more")
    return "\n".join(lines)


# --- compare: two outputs, sample by sample ----------------------------------------------

@dataclass
class Comparison:
    first: str
    second: str
    splits: int = 0
    shards: int = 0
    records: int = 0
    differences: list[str] = field(default_factory=list)
    stopped: bool = False  # at the limit: there may be more differences than listed

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        counts = ", ".join(_count(n, noun) for n, noun in ((self.splits, "split"), (self.shards, "shard"),
                                                         (self.records, "record")))
        return f"OK: {counts} equal to {self.second}'s"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


Features = dict[str, list]  # feature key -> its values, as a tf.train.Example holds them


# The order features are judged in: what identifies the record first, so that a
# misaligned record is named by its filename rather than by a label it has no business
# being compared with; the label last, after the format and size it is read with.
FEATURE_ORDER = (
    tfrecord.KEY_FILENAME, tfrecord.KEY_FORMAT, tfrecord.KEY_HEIGHT, tfrecord.KEY_WIDTH, tfrecord.KEY_CHANNELS,
    tfrecord.KEY_IMAGE, tfrecord.KEY_LABEL_FORMAT, tfrecord.KEY_LABEL,
)


class _Unreadable:
    def __init__(self, error: Exception):
        self.reason = error.problem if isinstance(error, InputError) else f"{error.__class__.__name__}: {error}"


def _sample_features(sample: Sample) -> Features:
    out = {}
    for key, value in tfrecord.example_features(sample).items():
        if isinstance(value, str):
            value = value.encode()
        elif isinstance(value, (bytearray, memoryview)):
            value = bytes(value)
        out[key] = [value]
    return out


def _records(sink: Sink, path: str) -> Iterator[Features | _Unreadable]:
    """The records of a shard as features; a reader's failure ends it with an _Unreadable."""
    try:
        examples = getattr(sink, "serialized_examples", None)  # sinks storing tf.train.Examples (TFRecord, ArrayRecord)
        if examples is not None:
            # Straight from the Example, not through a Sample: a record with a feature
            # too many or too few is then a difference to name, not a record that fails.
            for record in examples(path):
                yield tfrecord_format.decode_example(record)
        else:
            for sample in sink.read_shard(path):
                yield _sample_features(sample)
    except Exception as error:
        yield _Unreadable(error)


def compare(first_dir: str, second_dir: str, limit: int = 20) -> Comparison:
    """Sample-by-sample differences between two outputs, whatever wrote them; the first `limit` of them."""
    result = Comparison(first_dir, second_dir)
    first, second = open_output(first_dir), open_output(second_dir)
    for output in (first, second):
        result.differences += [f"{output.folder}: {problem}" for problem in output.problems]
    for split in sorted(set(first.splits) | set(second.splits)):
        if len(result.differences) >= limit:
            break
        a_shards, b_shards = first.splits.get(split), second.splits.get(split)
        if a_shards is None or b_shards is None:
            holder = first_dir if b_shards is None else second_dir
            result.differences.append(f"split {split}: only in {holder}")
            continue
        result.splits += 1
        if len(a_shards) != len(b_shards):
            result.differences.append(
                f"split {split}: {len(a_shards)} shards in {first_dir}, {len(b_shards)} in {second_dir}"
            )
            continue
        for a, b in zip(a_shards, b_shards):
            if len(result.differences) >= limit:
                break
            result.shards += 1
            shard = a["name"] if a["name"] == b["name"] else f"{a['name']} / {b['name']}"
            _compare_shard(result, first, second, a["name"], b["name"], f"split {split}, shard {shard}", limit)
    if len(result.differences) >= limit:
        del result.differences[limit:]
        result.stopped = True
    return result


def _compare_shard(
    result: Comparison, first: Output, second: Output, a_name: str, b_name: str, where: str, limit: int
) -> None:
    paths = storage.join(first.folder, a_name), storage.join(second.folder, b_name)
    missing = [path for path in paths if not storage.is_file(path)]
    if missing:
        result.differences.append(f"{where}: {' and '.join(missing)} missing")
        return
    with storage.local_copy(paths[0]) as a_path, storage.local_copy(paths[1]) as b_path:
        _compare_records(result, first, second, a_path, b_path, where, limit)


def _compare_records(
    result: Comparison, first: Output, second: Output, a_path: str, b_path: str, where: str, limit: int
) -> None:
    pairs = zip_longest(_records(first.sink, a_path), _records(second.sink, b_path))
    for index, (x, y) in enumerate(pairs):
        for record, folder in ((x, first.folder), (y, second.folder)):
            if isinstance(record, _Unreadable):
                result.differences.append(f"{where}, record {index}: unreadable in {folder} ({record.reason})")
                return
        if x is None or y is None:
            present, holder = (x, first.folder) if y is None else (y, second.folder)
            result.differences.append(f"{where}, record {index}{_named(present)}: only in {holder}")
            return
        result.records += 1
        difference = record_difference(x, y, first.folder, second.folder)
        if difference:
            result.differences.append(f"{where}, record {index}{_named(x)}: {difference}")
            if len(result.differences) >= limit:
                return


def _named(features: Features) -> str:
    names = features.get(tfrecord.KEY_FILENAME)
    if names and len(names) == 1 and isinstance(names[0], bytes):
        return f" ({names[0].decode(errors='replace')})"
    return ""


def record_difference(x: Features, y: Features, first: str = "the first", second: str = "the second") -> str | None:
    """How two records differ, by their first differing feature; None when they are equal."""
    if x == y:
        return None
    keys = [k for k in FEATURE_ORDER if k in x or k in y] + sorted((set(x) | set(y)) - set(FEATURE_ORDER))
    differing = [k for k in keys if x.get(k) != y.get(k)]
    key = differing[0]
    if key not in x or key not in y:
        holder, values = (second, y[key]) if key not in x else (first, x[key])
        what = f"only in {holder} ({_short_values(values)})"
    elif key == tfrecord.KEY_LABEL and len(x[key]) == len(y[key]) == 1:
        what = _label_difference(x, y, first, second)
    else:
        what = _values_difference(x[key], y[key], first, second)
    also = f" (also differ: {', '.join(differing[1:])})" if len(differing) > 1 else ""
    return f"feature {key}: {what}{also}"


def _short(value, room: int = 40) -> str:
    if isinstance(value, bytes):
        text = repr(value[:room]) + ("..." if len(value) > room else "")
        return f"{text} ({len(value)} bytes)" if len(value) > room else text
    return repr(value)


def _short_values(values: list) -> str:
    if len(values) == 1:
        return _short(values[0])
    shown = ", ".join(_short(v, 16) for v in values[:4])
    return f"[{shown}{', ...' if len(values) > 4 else ''}] ({len(values)} values)"


def _values_difference(a: list, b: list, first: str, second: str) -> str:
    if len(a) == len(b) == 1 and isinstance(a[0], bytes) and isinstance(b[0], bytes):
        offset = next((i for i, (p, q) in enumerate(zip(a[0], b[0])) if p != q), min(len(a[0]), len(b[0])))
        if max(len(a[0]), len(b[0])) > 40:
            return (
                f"{len(a[0])} bytes in {first}, {len(b[0])} in {second}, first differing at byte {offset}: "
                f"{_short(a[0][offset:offset + 8])} vs {_short(b[0][offset:offset + 8])}"
            )
    return f"{_short_values(a)} in {first}, {_short_values(b)} in {second}"


def _one_int(features: Features, key: str) -> int | None:
    values = features.get(key)
    return values[0] if values and len(values) == 1 and isinstance(values[0], int) else None


def _label_difference(x: Features, y: Features, first: str, second: str) -> str:
    a, b = x[tfrecord.KEY_LABEL][0], y[tfrecord.KEY_LABEL][0]
    label_format = x.get(tfrecord.KEY_LABEL_FORMAT)
    height, width = _one_int(x, tfrecord.KEY_HEIGHT), _one_int(x, tfrecord.KEY_WIDTH)
    if not (isinstance(a, bytes) and isinstance(b, bytes)) or height is None or width is None:
        return _values_difference([a], [b], first, second)
    if label_format == [b"raw"]:
        if len(a) != height * width * 4 or len(b) != height * width * 4:
            return f"raw label of {len(a)} bytes in {first}, {len(b)} in {second}, {height}x{width}x4 expected"
        pixels = np.frombuffer(a, "<i4").reshape(height, width), np.frombuffer(b, "<i4").reshape(height, width)
        return _pixels_difference(*pixels, f"raw int32 {width}x{height}", first, second)
    if label_format == [b"png"]:
        try:
            pixels = _decode_png(a, f"the label in {first}"), _decode_png(b, f"the label in {second}")
        except Exception as error:
            return f"PNG labels differ and one does not decode ({error.__class__.__name__}: {error})"
        if pixels[0].shape != pixels[1].shape:
            return f"PNG label of shape {pixels[0].shape} in {first}, {pixels[1].shape} in {second}"
        if np.array_equal(*pixels):
            # Equal pixels are not equal records: DeepLab2 stores the bytes Pillow's
            # default save writes, and so must an output that claims to be its equal.
            return f"PNG label bytes differ ({len(a)} bytes in {first}, {len(b)} in {second}), its pixels are equal"
        return _pixels_difference(*pixels, f"PNG {width}x{height}", first, second)
    return _values_difference([a], [b], first, second)


def _decode_png(data: bytes, what: str) -> np.ndarray:
    """A label PNG's pixels, after the header's size passed --max_pixels (a shard is input too:
    a small label could claim gigabytes of pixels)."""
    from PIL import Image

    png.inspect(data, what)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def _pixels_difference(a: np.ndarray, b: np.ndarray, what: str, first: str, second: str) -> str:
    differs = a != b
    if differs.ndim == 3:
        differs = differs.any(axis=2)
    count = int(np.count_nonzero(differs))
    row, col = divmod(int(np.argmax(differs)), differs.shape[1])
    noun = "pixel differs" if count == 1 else "pixels differ"
    return (
        f"{count} {noun} ({what}), first at (row {row}, col {col}): "
        f"{_pixel(a[row, col])} in {first}, {_pixel(b[row, col])} in {second}"
    )


def _pixel(value) -> str:
    return str(value.tolist())
