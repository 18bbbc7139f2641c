"""Bad input and bad output conditions: one clear line, exit 2, no half-written shard.

Each test damages one file of a small synthetic tree (train 13, val 3, test 2 frames,
64x32) and runs the command line in-process with --workers 1 (no fork under pytest),
except where a real process is needed (file size limit, --debug traceback).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csconv import cli
from csconv.pipeline.manifest import MANIFEST_NAME
from csconv.core.labels import BY_ID
from csconv.sinks.tfrecord import TFRecordSink

SIZES = {"train": 13, "val": 3, "test": 2}
TRAIN_CITIES = ["aachen", "bochum"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    from csconv.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("pristine") / "cityscapes"
    generate_dataset(root, SIZES, width=64, height=32, seed=0, cities={"train": TRAIN_CITIES})
    return root


@pytest.fixture
def root(pristine, tmp_path):
    copy = tmp_path / "cityscapes"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


@pytest.fixture
def out(tmp_path):
    return tmp_path / "out"


def frames(root: Path, split: str) -> list[Path]:
    return sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"), key=str)


def gtfine(image: Path, suffix: str) -> Path:
    split, city = image.parent.parent.name, image.parent.name
    stem = image.name[: -len("_leftImg8bit.png")]
    return image.parents[3] / "gtFine" / split / city / f"{stem}_gtFine_{suffix}"


def shard_of(split: str, index: int, num_shards: int = 10) -> str:
    per_shard = -(-SIZES[split] // num_shards)
    return f"{split}-{index // per_shard:05d}-of-{num_shards:05d}.tfrecord"


def run(capsys, root, out, *extra) -> tuple[int, str]:
    code = cli.main(["--cityscapes_root", str(root), "--output_dir", str(out), "--workers", "1", "--quiet", *extra])
    err = capsys.readouterr().err
    return code, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if not line.startswith("csconv: warning:")]


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    lines = error_lines(err)
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("csconv: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def assert_no_partial_output(out: Path, failing_shard: str | None = None) -> None:
    """No temporary file, no manifest, no final-named failing shard; every shard there is whole."""
    if not out.exists():
        return
    names = os.listdir(out)
    assert not [n for n in names if n.endswith(".partial")], names
    assert MANIFEST_NAME not in names
    if failing_shard is not None:
        assert failing_shard not in names
    sink = TFRecordSink()
    for name in names:
        if name.endswith(".tfrecord"):
            list(sink.read_shard(str(out / name)))  # parses completely


def rewrite_png(path: Path, mutate) -> None:
    """Apply `mutate` to the first IDAT chunk's data, then fix its CRC (valid structure)."""
    data = bytearray(path.read_bytes())
    pos = 8
    while True:
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            break
        pos += 12 + length
    mutate(data, pos + 8, length)
    struct.pack_into(">I", data, pos + 8 + length, zlib.crc32(bytes(data[pos + 4 : pos + 8 + length])))
    path.write_bytes(bytes(data))


def save_instance_ids(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array.astype(np.uint16)).save(path)  # 16-bit grayscale PNG


# --- the input tree ---------------------------------------------------------------


def test_root_that_does_not_exist(capsys, tmp_path, out):
    code, err = run(capsys, tmp_path / "nowhere", out)
    assert_one_line_error(code, err, str(tmp_path / "nowhere"), "does not exist")
    assert not out.exists()


def test_root_that_is_not_a_cityscapes_tree_names_the_expected_folders(capsys, tmp_path, out):
    (tmp_path / "empty").mkdir()
    code, err = run(capsys, tmp_path / "empty", out)
    assert_one_line_error(code, err, "not a Cityscapes root", "leftImg8bit/", "gtFine/")


def test_requested_split_folder_missing(capsys, root, out):
    shutil.rmtree(root / "leftImg8bit" / "val")
    code, err = run(capsys, root, out, "--splits", "train,val,test")
    assert_one_line_error(code, err, str(root / "leftImg8bit"), "val", "split folder missing")
    assert not out.exists() or not os.listdir(out)


def test_unrequested_missing_split_is_skipped_with_a_warning(capsys, root, out):
    shutil.rmtree(root / "leftImg8bit" / "val")
    code, err = run(capsys, root, out)
    assert code == 0
    assert "csconv: warning: the input holds no 'val' split; converting train, test" in err
    assert not list(out.glob("val-*")) and len(list(out.glob("train-*"))) == 10


def test_split_with_no_images(capsys, root, out):
    for image in frames(root, "val"):
        image.unlink()
    code, err = run(capsys, root, out)
    assert_one_line_error(code, err, "val", "no *_leftImg8bit.png images")


def test_image_without_instance_ids(capsys, root, out):
    image = frames(root, "train")[4]
    gtfine(image, "instanceIds.png").unlink()
    code, err = run(capsys, root, out)
    assert_one_line_error(code, err, str(gtfine(image, "instanceIds.png")), "file not found")
    assert_no_partial_output(out, shard_of("train", 4))


def test_image_without_polygons_for_semantic(capsys, root, out):
    image = frames(root, "val")[1]
    gtfine(image, "polygons.json").unlink()
    code, err = run(capsys, root, out, "--create_panoptic_data=false")
    assert_one_line_error(code, err, str(gtfine(image, "polygons.json")), "file not found")
    assert_no_partial_output(out, shard_of("val", 1))


# --- damaged PNGs -------------------------------------------------------------------


@pytest.mark.parametrize("which", ["image", "label"])
def test_truncated_png(capsys, root, out, which):
    image = frames(root, "train")[3]
    path = image if which == "image" else gtfine(image, "instanceIds.png")
    path.write_bytes(path.read_bytes()[:-30])
    code, err = run(capsys, root, out)
    assert_one_line_error(code, err, str(path), "truncated PNG")
    assert_no_partial_output(out, shard_of("train", 3))


@pytest.mark.parametrize("which", ["image", "label"])
def test_bit_flipped_png_is_caught_by_chunk_crc(capsys, root, out, which):
    image = frames(root, "val")[0]
    path = image if which == "image" else gtfine(image, "instanceIds.png")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))
    code, err = run(capsys, root, out)
    assert_one_line_error(code, err, str(path), "CRC mismatch")
    assert_no_partial_output(out, shard_of("val", 0))


def test_damage_inside_compressed_data_needs_decode_check(capsys, root, out, tmp_path):
    image = frames(root, "train")[0]
    assert Image.open(image).mode == "RGB"  # copied byte for byte without --decode_check

    def flip(data, start, length):
        data[start + length // 2] ^= 0x10

    rewrite_png(image, flip)
    # Structure and CRCs are valid: the default (copying) conversion cannot see it...
    code, err = run(capsys, root, tmp_path / "unchecked")
    assert code == 0, err
    # ... a full decode does.
    code, err = run(capsys, root, out, "--decode_check")
    assert_one_line_error(code, err, str(image), "does not decode")
    assert_no_partial_output(out, shard_of("train", 0))


# --- labels that do not fit ---------------------------------------------------------


def test_image_and_label_of_different_sizes(capsys, root, out):
    image = frames(root, "train")[5]
    label = gtfine(image, "instanceIds.png")
    save_instance_ids(label, np.full((16, 32), 7))
    code, err = run(capsys, root, out)
    assert_one_line_error(code, err, str(label), "label is 32x16 but its image is 64x32")
    assert_no_partial_output(out, shard_of("train", 5))


def test_label_png_of_wrong_bit_depth(capsys, root, out):
    image = frames(root, "train")[6]
    label = gtfine(image, "instanceIds.png")
    Image.fromarray(np.full((32, 64), 7, dtype=np.uint8)).save(label)  # 8-bit
    code, err = run(capsys, root, out)
    assert_one_line_error(code, err, str(label), "16-bit grayscale", "8 bits")
    assert_no_partial_output(out, shard_of("train", 6))


def test_prepared_label_train_ids_of_wrong_mode(capsys, root, out):
    for index, image in enumerate(frames(root, "val")):
        ids = np.full((32, 64), 0, dtype=np.uint8)
        mode_image = Image.fromarray(ids)
        if index == 2:
            mode_image = mode_image.convert("RGB")
        mode_image.save(gtfine(image, "labelTrainIds.png"))
    bad = gtfine(frames(root, "val")[2], "labelTrainIds.png")
    code, err = run(capsys, root, out, "--splits=val", "--create_panoptic_data=false", "--source=prepared")
    assert_one_line_error(code, err, str(bad), "8-bit grayscale")
    assert_no_partial_output(out, shard_of("val", 2))


def test_instance_id_whose_label_is_not_in_the_table(capsys, root, out):
    assert 40 not in BY_ID
    image = frames(root, "train")[7]
    label = gtfine(image, "instanceIds.png")
    ids = np.asarray(Image.open(label)).astype(np.uint16).copy()
    ids[0, 0] = 40
    save_instance_ids(label, ids)
    code, err = run(capsys, root, out)
    assert_one_line_error(code, err, str(label), "value 40", "not in the Cityscapes table")
    assert_no_partial_output(out, shard_of("train", 7))


def test_more_than_999_instances_of_one_class(capsys, root, out):
    image = frames(root, "train")[8]
    label = gtfine(image, "instanceIds.png")
    ids = np.full(32 * 64, 7, dtype=np.uint16)
    ids[:1000] = 26000 + np.arange(1000)  # 1000 cars
    save_instance_ids(label, ids.reshape(32, 64))
    code, err = run(capsys, root, out)
    assert_one_line_error(code, err, str(label), "more than 999 instances of 'car'")
    assert_no_partial_output(out, shard_of("train", 8))


def test_malformed_polygons_json(capsys, root, out):
    image = frames(root, "train")[9]
    path = gtfine(image, "polygons.json")
    path.write_text('{"imgWidth": 64, "imgHeight": 32, "objects": [')
    code, err = run(capsys, root, out, "--create_panoptic_data=false")
    assert_one_line_error(code, err, str(path), "malformed polygons JSON")
    assert_no_partial_output(out, shard_of("train", 9))


def test_unknown_label_name_in_polygons(capsys, root, out):
    image = frames(root, "train")[10]
    path = gtfine(image, "polygons.json")
    doc = json.loads(path.read_text())
    doc["objects"].append({"label": "flying saucer", "polygon": [[0, 0], [5, 0], [5, 5]]})
    path.write_text(json.dumps(doc))
    code, err = run(capsys, root, out, "--create_panoptic_data=false")
    assert_one_line_error(code, err, str(path), "unknown label 'flying saucer'")
    assert_no_partial_output(out, shard_of("train", 10))


# --- the prepared (prework) source --------------------------------------------------


def make_prepared(root: Path, split: str = "val") -> Path:
    """A small, valid cityscapes_panoptic_<split>_trainId.json + PNG folder, made by hand
    from the instanceIds (segment id = instanceIds value, as csCreatePanopticImgs does)."""
    folder = root / "gtFine" / f"cityscapes_panoptic_{split}_trainId"
    folder.mkdir()
    annotations = []
    for image in frames(root, split):
        ids = np.asarray(Image.open(gtfine(image, "instanceIds.png"))).astype(np.int64)
        rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)
        name = image.name.replace("_leftImg8bit.png", "_gtFine_panoptic.png")
        Image.fromarray(rgb, "RGB").save(folder / name)
        segments = []
        values, areas = np.unique(ids, return_counts=True)
        for value, area in zip(values.tolist(), areas.tolist()):
            label = BY_ID[value if value < 1000 else value // 1000]
            if label.ignore_in_eval:
                continue
            segments.append(
                {"id": value, "category_id": label.train_id, "area": area,
                 "iscrowd": int(label.has_instances and value < 1000)}
            )
        annotations.append({"image_id": image.name[: -len("_leftImg8bit.png")], "file_name": name,
                            "segments_info": segments})
    path = root / "gtFine" / f"cityscapes_panoptic_{split}_trainId.json"
    path.write_text(json.dumps({"annotations": annotations}))
    return path


PREPARED = ("--splits=val", "--source=prepared")


def test_prepared_source_made_by_hand_converts(capsys, root, out):
    make_prepared(root)
    code, err = run(capsys, root, out, *PREPARED)
    assert code == 0, err


def test_prepared_json_missing(capsys, root, out):
    code, err = run(capsys, root, out, *PREPARED)
    assert_one_line_error(code, err, "cityscapes_panoptic_val_trainId.json", "file not found")


def test_prepared_segment_area_disagrees_with_png(capsys, root, out):
    path = make_prepared(root)
    doc = json.loads(path.read_text())
    segment = doc["annotations"][1]["segments_info"][0]
    segment["area"] += 1
    path.write_text(json.dumps(doc))
    code, err = run(capsys, root, out, *PREPARED)
    line = assert_one_line_error(code, err, doc["annotations"][1]["file_name"], f"segment {segment['id']}")
    assert f"should cover {segment['area']} pixels" in line
    assert_no_partial_output(out, shard_of("val", 1))


def test_prepared_duplicate_image_id(capsys, root, out):
    path = make_prepared(root)
    doc = json.loads(path.read_text())
    doc["annotations"].append(doc["annotations"][0])
    path.write_text(json.dumps(doc))
    code, err = run(capsys, root, out, *PREPARED)
    assert_one_line_error(code, err, str(path), "appears twice")


# --- unreadable files ---------------------------------------------------------------


def test_dangling_symlink(capsys, root, out):
    image = frames(root, "train")[11]
    image.unlink()
    image.symlink_to(root / "gone.png")
    code, err = run(capsys, root, out)
    assert_one_line_error(code, err, str(image), "dangling symbolic link")
    assert_no_partial_output(out, shard_of("train", 11))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(capsys, root, out):
    label = gtfine(frames(root, "train")[12], "instanceIds.png")
    label.chmod(0)
    code, err = run(capsys, root, out)
    assert_one_line_error(code, err, str(label), "permission denied")
    assert_no_partial_output(out, shard_of("train", 12))


# --- the output side ----------------------------------------------------------------


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_output_disk_full(root, out, workers):
    done = subprocess.run(
        [sys.executable, "-m", "csconv", "--cityscapes_root", str(root), "--output_dir", str(out),
         "--workers", workers, "--quiet"],
        capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=120,
    )
    assert_one_line_error(done.returncode, done.stderr, str(out), "output disk full or file size limit reached")
    names = os.listdir(out)
    assert not [n for n in names if n.endswith(".partial")], names
    assert MANIFEST_NAME not in names
    for name in names:
        if name.endswith(".tfrecord"):
            assert (out / name).stat().st_size <= 12_000
            list(TFRecordSink().read_shard(str(out / name)))


def test_debug_shows_the_traceback(root, out):
    gtfine(frames(root, "train")[0], "instanceIds.png").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "csconv", "--cityscapes_root", str(root), "--output_dir", str(out),
         "--workers", "2", "--quiet", "--debug"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0 and "Traceback" in done.stderr and "InputError" in done.stderr


def test_existing_output_is_refused_and_overwrite_replaces_only_csconv_files(capsys, root, out):
    assert run(capsys, root, out)[0] == 0
    (out / "notes.txt").write_text("mine")
    code, err = run(capsys, root, out)
    assert_one_line_error(code, err, str(out), "already holds", "--overwrite", "--resume")
    code, err = run(capsys, root, out, "--overwrite", "--resume")
    assert_one_line_error(code, err, "--overwrite and --resume")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "train-00000-of-00010.tfrecord").write_bytes(b"stale")
    code, err = run(capsys, root, out, "--overwrite")
    assert code == 0, err
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # shards rewritten, notes.txt untouched


def test_leftover_temporary_files_are_cleaned_up(capsys, root, out):
    out.mkdir()
    (out / ".train-00003-of-00010.tfrecord.partial").write_bytes(b"half")
    code, err = run(capsys, root, out)
    assert code == 0, err
    assert not [n for n in os.listdir(out) if n.startswith(".")]


# --- --keep_going -------------------------------------------------------------------


def read_shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name.endswith(".tfrecord")}


def test_keep_going_records_bad_frames_and_keeps_the_shard_layout(capsys, root, out, tmp_path):
    clean = tmp_path / "clean"
    assert run(capsys, root, clean)[0] == 0
    bad_train = frames(root, "train")[4]
    bad_train.write_bytes(bad_train.read_bytes()[:-30])
    bad_val = gtfine(frames(root, "val")[2], "instanceIds.png")
    bad_val.unlink()

    code, err = run(capsys, root, out, "--keep_going")
    assert code == 1, err
    assert "skipped 2 bad frame(s)" in err
    assert f"train frame 4 ({shard_of('train', 4)}): {bad_train}: truncated PNG" in err
    assert f"val frame 2 ({shard_of('val', 2)}): {bad_val}: file not found" in err

    manifest = json.loads((out / MANIFEST_NAME).read_text())
    first, second = manifest["skipped"]
    assert first.pop("reason").startswith("truncated PNG")
    assert first == {"split": "train", "index": 4, "shard": shard_of("train", 4), "path": str(bad_train)}
    assert second == {"split": "val", "index": 2, "shard": shard_of("val", 2), "path": str(bad_val),
                      "reason": "file not found"}
    assert manifest["splits"]["train"]["records"] == 12 and manifest["splits"]["train"]["frames"] == 13

    clean_shards, kept_going = read_shards(clean), read_shards(out)
    assert set(clean_shards) == set(kept_going)
    damaged = {shard_of("train", 4), shard_of("val", 2)}
    for name in clean_shards:
        if name not in damaged:
            assert kept_going[name] == clean_shards[name], name  # no frame moved shard
    sink = TFRecordSink()
    shard = [s.filename for s in sink.read_shard(str(out / shard_of("train", 4)))]
    expected = [s.filename for s in sink.read_shard(str(clean / shard_of("train", 4)))]
    assert shard == [name for name in expected if name != bad_train.name[: -len("_leftImg8bit.png")]]
    assert list(sink.read_shard(str(out / shard_of("val", 2)))) == []

    from csconv.inspection.verify import verify

    assert verify(str(out)).ok


# --- option and per-frame errors found in review -------------------------------------


@pytest.mark.parametrize("divisor", ["8421505", "0", "-3"])
def test_label_divisor_that_cannot_fit_int32_is_refused_before_any_work(capsys, root, out, divisor):
    code, err = run(capsys, root, out, "--label_divisor", divisor)
    assert_one_line_error(code, err, "--label_divisor must be between 1 and 8,421,504")
    assert not out.exists()


def test_largest_label_divisor_converts(capsys, root, out):
    code, err = run(capsys, root, out, "--label_divisor", "8421504", "--splits", "val")
    assert code == 0, err
    labels = [s.label for s in TFRecordSink().read_shard(str(out / "val-00000-of-00010.tfrecord"))]
    assert labels and all(int(label.max()) == 255 * 8421504 for label in labels)


def _rename_frame(image: Path, new_stem: str) -> Path:
    old_stem = image.name[: -len("_leftImg8bit.png")]
    for path in [image, *image.parents[3].glob(f"gtFine/*/*/{old_stem}_gtFine_*")]:
        path.rename(path.with_name(path.name.replace(old_stem, new_stem)))
    return image.with_name(f"{new_stem}_leftImg8bit.png")


def test_webdataset_refuses_a_frame_name_holding_a_dot(capsys, root, out, tmp_path):
    image = _rename_frame(frames(root, "val")[1], "frankfurt_000000_0.5")
    code, err = run(capsys, root, out, "--sink", "webdataset")
    assert_one_line_error(code, err, str(image), "holds a '.'", "WebDataset")
    code, err = run(capsys, root, tmp_path / "kept", "--sink", "webdataset", "--keep_going")
    assert code == 1 and f"{image}: frame name" in err, err
    assert run(capsys, root, tmp_path / "tfrecord")[0] == 0  # another sink takes that name


def test_decode_check_on_a_header_claiming_too_many_pixels(capsys, root, out):
    from PIL import Image

    image = frames(root, "train")[2]
    data = bytearray(image.read_bytes())
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 1  # above Pillow's decompression bomb limit
    struct.pack_into(">II", data, 16, side, side)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    image.write_bytes(bytes(data))
    # Past csconv's own --max_pixels, which refuses it first by default (tests/test_bombs.py).
    code, err = run(capsys, root, out, "--decode_check", f"--max_pixels={side * side}")
    assert_one_line_error(code, err, str(image), "more than Pillow decodes", "decompression bomb limit")
