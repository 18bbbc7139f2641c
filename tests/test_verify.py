"""`csconv verify`: a clean output passes; flipped, truncated and missing shards are named."""

import os
import shutil

import pytest

from conftest import sink_param
from csconv.pipeline.convert import convert
from csconv.inspection.verify import compare, format_report, verify


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
    same = compare(str(out), str(again))
    assert same.ok and (same.splits, same.shards, same.records) == (3, 30, 17)
    semantic = tmp_path / "semantic"
    from csconv.core.records import ConvertOptions, Task

    convert(str(root), str(semantic), options=ConvertOptions(task=Task.SEMANTIC), show_progress=False)
    differences = compare(str(out), str(semantic)).differences
    assert differences[0].startswith(
        "split train, shard train-00000-of-00010.tfrecord, record 0 (aachen_000000_000019): "
        f"feature image/segmentation/class/format: b'raw' in {out}, b'png' in {semantic} "
        "(also differ: image/segmentation/class/encoded)"
    ), differences[0]


@pytest.fixture(scope="module", params=[sink_param(name) for name in ("parquet", "webdataset", "arrayrecord")])
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
    comparison = compare(str(clean_output[1]), str(other_sink_output))
    assert comparison.differences == [] and comparison.records == 17


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


# --- DeepLab2's own output: TFRecords written by TensorFlow, no manifest -----------------
# These tests import TensorFlow, so they come last and convert with one worker: forking
# a process that has loaded TensorFlow is asking for trouble.

from csconv.cli import main  # noqa: E402
from tf_copy import LABEL_KEY, copy_through_tensorflow, set_label_pixel  # noqa: E402


def test_against_a_tensorflow_written_copy_is_equal(clean_output, tmp_path, capsys):
    _, out = clean_output
    copy = tmp_path / "deeplab2"
    # Guard: the copy's records are other bytes than csconv's, so only a comparison of
    # parsed features can find them equal.
    assert copy_through_tensorflow(out, copy) == 17
    assert not (copy / "csconv-manifest.json").exists()
    assert main(["verify", str(out), "--against", str(copy)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"OK: 3 splits, 30 shards, 17 records equal to {copy}'s"
    # Either side may be DeepLab2's: the folder without a manifest is laid out by file name.
    assert main(["verify", str(copy), "--against", str(out)]) == 0
    text = capsys.readouterr().out
    assert "no manifest, DeepLab2-style TFRecords, 30 shards, 17 records" in text
    assert text.splitlines()[-1] == f"OK: 3 splits, 30 shards, 17 records equal to {out}'s"


def test_one_changed_label_pixel_is_named(clean_output, tmp_path, capsys):
    _, out = clean_output
    copy = tmp_path / "deeplab2"
    changed = {}

    def edit(shard, index, example):
        if (shard, index) == ("train-00001-of-00010.tfrecord", 1):
            changed["old"] = set_label_pixel(example, 17, 42, 13005)
            changed["name"] = example.features.feature["image/filename"].bytes_list.value[0].decode()

    copy_through_tensorflow(out, copy, edit)
    assert main(["verify", str(out), "--against", str(copy)]) == 1
    lines = capsys.readouterr().out.splitlines()
    differences = lines[lines.index(next(l for l in lines if l.startswith("DIFFERS"))) + 1:]
    assert differences == [
        f"  split train, shard train-00001-of-00010.tfrecord, record 1 ({changed['name']}): "
        f"feature {LABEL_KEY}: 1 pixel differs (raw int32 64x32), first at (row 17, col 42): "
        f"{changed['old']} in {out}, 13005 in {copy}"
    ]


def test_extra_and_missing_features_are_differences_not_crashes(clean_output, tmp_path):
    import tensorflow as tf

    _, out = clean_output
    copy = tmp_path / "deeplab2"

    def edit(shard, index, example):
        if (shard, index) == ("train-00000-of-00010.tfrecord", 0):
            example.features.feature["image/extra"].float_list.value.extend([0.5, 2.0])
        if (shard, index) == ("val-00001-of-00010.tfrecord", 0):
            del example.features.feature["image/format"]

    copy_through_tensorflow(out, copy, edit)
    differences = compare(str(out), str(copy)).differences
    assert len(differences) == 2
    assert differences[0].startswith("split train, shard train-00000-of-00010.tfrecord, record 0 (")
    assert differences[0].endswith(f"feature image/extra: only in {copy} ([0.5, 2.0] (2 values))")
    assert differences[1].startswith("split val, shard val-00001-of-00010.tfrecord, record 0 (")
    assert differences[1].endswith(f"feature image/format: only in {out} (b'png')")
    # Verifying the copy on its own finds both records off DeepLab2's feature set.
    defects = verify(str(copy)).defects
    assert defects == [
        "train-00000-of-00010.tfrecord: record 0: unreadable (unexpected feature(s) 'image/extra')",
        "val-00001-of-00010.tfrecord: record 0: unreadable (feature 'image/format' missing or not a single value)",
    ]
    assert tf  # the edits above need TensorFlow's protobuf classes loaded


def test_semantic_png_labels_compare_by_pixels_and_bytes(clean_output, tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from csconv.core.records import ConvertOptions, Task

    root, _ = clean_output
    semantic = tmp_path / "semantic"
    convert(str(root), str(semantic), options=ConvertOptions(task=Task.SEMANTIC), show_progress=False)

    def reencode(example, change_pixel: bool):
        label = example.features.feature[LABEL_KEY].bytes_list.value
        pixels = np.array(Image.open(io.BytesIO(label[0])))
        if change_pixel:
            pixels[3, 9] = 7 if pixels[3, 9] != 7 else 8
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="png", compress_level=0)
        label[0] = buffer.getvalue()
        return pixels[3, 9]

    new = {}

    def edit(shard, index, example):
        if (shard, index) == ("val-00000-of-00010.tfrecord", 0):
            reencode(example, change_pixel=False)
        if (shard, index) == ("val-00002-of-00010.tfrecord", 0):
            new["value"] = reencode(example, change_pixel=True)

    copy = tmp_path / "deeplab2"
    copy_through_tensorflow(semantic, copy, edit)
    differences = compare(str(semantic), str(copy)).differences
    assert len(differences) == 2
    assert "split val, shard val-00000-of-00010.tfrecord, record 0" in differences[0]
    assert f"feature {LABEL_KEY}: PNG label bytes differ" in differences[0] and "its pixels are equal" in differences[0]
    assert "split val, shard val-00002-of-00010.tfrecord, record 0" in differences[1]
    assert f"feature {LABEL_KEY}: 1 pixel differs (PNG 64x32), first at (row 3, col 9): " in differences[1]
    assert differences[1].endswith(f" in {semantic}, {new['value']} in {copy}")


def test_stray_shard_files_are_defects(damaged, tmp_path, capsys):
    # Left over from a run with --num_shards 6: the tfrecord sink's naming, not in the manifest.
    stray = damaged / "train-00004-of-00006.tfrecord"
    stray.write_bytes((damaged / "train-00000-of-00010.tfrecord").read_bytes())
    (damaged / "notes-about-train.txt").write_text("not a shard\n")
    assert verify(str(damaged)).defects == [
        "train-00004-of-00006.tfrecord: a tfrecord shard file the manifest does not list (left over from another run?)"
    ]
    assert main(["verify", str(damaged)]) == 1
    assert "train-00004-of-00006.tfrecord: a tfrecord shard file the manifest does not list" in capsys.readouterr().out
    # Without a manifest the layout most files share is the output; the odd one is named.
    copy = tmp_path / "deeplab2"
    copy_through_tensorflow(damaged, copy)
    assert verify(str(copy)).defects == ["train-00004-of-00006.tfrecord: not one of the train split's 10 shards"]
    assert compare(str(damaged), str(copy)).differences == [
        f"{copy}: train-00004-of-00006.tfrecord: not one of the train split's 10 shards"
    ]


def test_other_sinks_name_their_stray_shards(other_sink_output, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(other_sink_output, copy)
    first = sorted(p.name for p in copy.iterdir() if p.name.startswith("val-00000"))[0]
    stray = first.replace("val-00000", "val-00012")
    (copy / stray).write_bytes((copy / first).read_bytes())
    assert verify(str(copy)).defects == [
        f"{stray}: a {other_sink_output.name} shard file the manifest does not list (left over from another run?)"
    ]


def test_a_folder_that_is_no_output_is_an_error(tmp_path, capsys):
    (tmp_path / "train.tfrecord").write_bytes(b"")
    assert main(["verify", str(tmp_path)]) == 2
    assert "neither a csconv output (no csconv-manifest.json) nor DeepLab2's" in capsys.readouterr().err


def test_against_decodes_no_png_label_beyond_max_pixels():
    """--against decodes differing PNG labels to count their pixels; a label whose header
    claims more than --max_pixels (default 89,478,485) is refused before Pillow inflates it."""
    import struct
    import zlib

    from csconv.sinks import tfrecord
    from csconv.inspection.verify import record_difference

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def label(width, height):
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        rows = zlib.compress(b"\0" * (width + 1) * min(height, 4))
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")

    def features(data):
        return {tfrecord.KEY_HEIGHT: [4], tfrecord.KEY_WIDTH: [4], tfrecord.KEY_LABEL_FORMAT: [b"png"],
                tfrecord.KEY_LABEL: [data]}

    difference = record_difference(features(label(4, 4)), features(label(20000, 20000)), "A", "B")
    assert difference == (
        "feature image/segmentation/class/encoded: PNG labels differ and one does not decode (InputError: "
        "the label in B: header claims 20000x20000 pixels, more than --max_pixels (89,478,485))"
    )


def test_verify_max_pixels_is_the_limit_its_png_checks_apply(tmp_path, capsys):
    """An output converted with a raised --max_pixels verifies with the same value, and a
    lower one than its images have makes them defects, never decoded."""
    from csconv import cli
    from csconv.synthetic import generate_dataset

    root, out = tmp_path / "root", tmp_path / "out"
    generate_dataset(root, {"train": 1, "val": 1, "test": 1}, width=64, height=32, seed=1)
    assert cli.main(["--cityscapes_root", str(root), "--output_dir", str(out), "--workers", "1", "--quiet",
                     "--create_panoptic_data=false"]) == 0
    assert cli.main(["verify", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["verify", str(out), "--max_pixels", "1000"]) == 1
    report = capsys.readouterr().out
    assert "more than --max_pixels (1,000)" in report
    assert cli.main(["verify", str(out)]) == 0  # the limit was the command's only
