"""`csconv verify`: a clean output passes; flipped, truncated and missing shards are named."""

import os
import shutil

import pytest

from csconv.convert import convert
from csconv.verify import compare, format_report, verify


@pytest.fixture(scope="module")
def clean_output(tmp_path_factory):
    from csconv.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("cityscapes")
    generate_dataset(root, {"train": 12, "val": 3, "test": 2}, width=64, height=32)
    out = tmp_path_factory.mktemp("out") / "tfrecord"
    convert(str(root), str(out), show_progress=False)
    return root, out


@pytest.fixture
def damaged(clean_output, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(clean_output[1], copy)
    return copy


def test_clean_output_verifies(clean_output):
    report = verify(str(clean_output[1]))
    assert report.ok, report.defects
    assert (report.shards, report.records) == (30, 17)
    assert "OK" in format_report(report)


def test_flipped_byte_names_shard_and_record(damaged):
    shard = damaged / "train-00001-of-00010.tfrecord"
    data = bytearray(shard.read_bytes())
    record_length = int.from_bytes(data[:8], "little") + 16
    data[record_length + 100] ^= 0x40  # inside the second record
    shard.write_bytes(bytes(data))
    report = verify(str(damaged))
    assert not report.ok
    text = format_report(report)
    assert "train-00001-of-00010.tfrecord: CRC32C differs" in text
    assert "train-00001-of-00010.tfrecord: record 1: unreadable" in text


def test_truncated_shard_is_named(damaged):
    shard = damaged / "val-00000-of-00010.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-10])
    text = format_report(verify(str(damaged)))
    assert "val-00000-of-00010.tfrecord: record 0: unreadable" in text
    assert "bytes, the manifest says" in text


def test_missing_shard_is_named(damaged):
    os.unlink(damaged / "test-00001-of-00010.tfrecord")
    report = verify(str(damaged))
    assert report.defects == ["test-00001-of-00010.tfrecord: missing"]


def test_against_finds_no_difference_between_equal_outputs_and_one_in_changed(clean_output, tmp_path):
    root, out = clean_output
    again = tmp_path / "again"
    convert(str(root), str(again), workers=2, show_progress=False)
    assert compare(str(out), str(again)) == []
    semantic = tmp_path / "semantic"
    from csconv.core.records import ConvertOptions, Task

    convert(str(root), str(semantic), options=ConvertOptions(task=Task.SEMANTIC), show_progress=False)
    differences = compare(str(out), str(semantic))
    assert differences and "train-00000-of-00010.tfrecord vs train-00000-of-00010.tfrecord: record 0: label" in differences[0]


@pytest.fixture(scope="module", params=["parquet", "webdataset"])
def other_sink_output(request, clean_output, tmp_path_factory):
    root, _ = clean_output
    out = tmp_path_factory.mktemp("other") / request.param
    convert(str(root), str(out), sink_name=request.param, show_progress=False)
    return out


def test_other_sinks_verify_and_their_damage_is_named(other_sink_output, tmp_path):
    assert verify(str(other_sink_output)).ok
    shards = sorted(p.name for p in other_sink_output.iterdir() if p.name.startswith("train-0000"))
    first, second, third = shards[:3]
    damaged = tmp_path / "damaged"
    shutil.copytree(other_sink_output, damaged)
    data = bytearray((damaged / first).read_bytes())
    data[len(data) // 2] ^= 0x10
    (damaged / first).write_bytes(bytes(data))
    (damaged / second).write_bytes((damaged / second).read_bytes()[:-100])
    os.unlink(damaged / third)
    text = format_report(verify(str(damaged)))
    assert f"{first}: CRC32C differs from the manifest" in text
    assert f"{second}: " in text and "bytes, the manifest says" in text
    assert f"{third}: missing" in text


def test_against_compares_across_sinks(clean_output, other_sink_output):
    assert compare(str(clean_output[1]), str(other_sink_output)) == []


def test_sha256_on_request_is_sha256sum_compatible_and_verified(clean_output, tmp_path):
    import hashlib
    import json

    root, _ = clean_output
    out = tmp_path / "with-sha"
    convert(str(root), str(out), sha256=True, show_progress=False)
    manifest = json.loads((out / "csconv-manifest.json").read_text())
    shard = manifest["splits"]["train"]["shards"][0]
    data = (out / shard["name"]).read_bytes()
    assert shard["sha256"] == hashlib.sha256(data).hexdigest()
    from crc32c import crc32c

    assert shard["crc32c"] == f"{crc32c(data):08x}"
    assert verify(str(out)).ok
    # Both checksums are checked: a shard rewritten with its CRC kept but not its SHA-256
    # cannot happen by accident, so damage shows in both.
    (out / shard["name"]).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    text = format_report(verify(str(out)))
    assert "CRC32C differs" in text and "SHA-256 differs" in text
