"""`csconv eval-gt` is identical to cityscapesscripts' csCreatePanopticImgs (original ids).

The real tool runs on a copy of a synthetic tree; its JSON must json.load() to the same
value as ours and its PNGs must be the same bytes (the same pixels with
--png_compress_level). Set CSCONV_SLOW=1 to also time both at 2048x1024 on 3 frames.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import console_script
from PIL import Image

from csconv.cli import eval_gt as eval_gt_command
from csconv.core.panoptic_gt import segment_table
from csconv.core.errors import CsconvError, InputError
from csconv.synthetic import generate_dataset


def parse(*argv: str):
    """In-process runs get one worker (the last --workers given counts): no fork of pytest."""
    parser = argparse.ArgumentParser(prog="csconv")
    eval_gt_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["eval-gt", "--workers", "1", *argv])


def run_reference(root: Path, splits) -> float:
    """csCreatePanopticImgs without --use-train-id, writing into root/gtFine; returns seconds."""
    env = dict(os.environ, CITYSCAPES_DATASET=str(root))
    started = time.perf_counter()
    done = subprocess.run([console_script("csCreatePanopticImgs"), "--set-names", *splits], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, f"csCreatePanopticImgs exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr}"
    return seconds


def assert_same_output(reference: Path, ours: Path, splits, same_bytes: bool = True) -> None:
    for split in splits:
        name = f"cityscapes_panoptic_{split}"
        with open(reference / f"{name}.json") as f:
            expected = json.load(f)
        with open(ours / f"{name}.json") as f:
            got = json.load(f)
        assert got == expected, f"{split}: JSON differs"
        ref_pngs = sorted(os.listdir(reference / name))
        assert sorted(os.listdir(ours / name)) == ref_pngs and ref_pngs
        for png in ref_pngs:
            with Image.open(reference / name / png) as a, Image.open(ours / name / png) as b:
                assert (a.mode, a.size) == (b.mode, b.size) == ("RGB", a.size)
                assert np.array_equal(np.asarray(a), np.asarray(b)), f"{png}: pixels differ"
            expected, got = (reference / name / png).read_bytes(), (ours / name / png).read_bytes()
            assert (got == expected) is same_bytes, f"{png}: bytes {'differ' if same_bytes else 'equal'}"


SPLITS = ("train", "val", "test")
REAL = Path(__file__).resolve().parents[2] / "shared" / "cityscapes-real"


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("evalgt")
    raw = base / "raw"
    # train frame 1 is crowded (many instances), frame 2 has no thing; test has placeholders.
    generate_dataset(raw, {"train": 3, "val": 2, "test": 1}, width=160, height=80, seed=5)
    reference = base / "reference"
    shutil.copytree(raw, reference)
    run_reference(reference, SPLITS)
    out = base / "ours"
    assert eval_gt_command.run(parse("--cityscapes_root", str(raw), "--output_dir", str(out))) == 0
    return raw, reference, out


def test_identical_to_cs_create_panoptic_imgs(trees):
    raw, reference, out = trees
    assert_same_output(reference / "gtFine", out, SPLITS)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Cityscapes frames not present at {REAL}")
def test_identical_to_cs_create_panoptic_imgs_on_real_frames(tmp_path):
    # The reference writes next to its input, so it runs on a copy, never in ../shared.
    reference = tmp_path / "reference"
    shutil.copytree(REAL, reference)
    run_reference(reference, ["train"])
    out = tmp_path / "ours"
    assert eval_gt_command.run(parse("--cityscapes_root", str(REAL), "--output_dir", str(out))) == 0
    assert_same_output(reference / "gtFine", out, ["train"])


def test_output_exercises_crowd_void_and_things(trees):
    _, _, out = trees
    with open(out / "cityscapes_panoptic_train.json") as f:
        document = json.load(f)
    segments = [s for a in document["annotations"] for s in a["segments_info"]]
    assert any(s["iscrowd"] == 1 for s in segments), "no crowd segment: the comparison would miss that rule"
    assert any(s["category_id"] >= 24 and s["iscrowd"] == 0 for s in segments)
    assert max(len(a["segments_info"]) for a in document["annotations"]) > 60  # the crowded frame
    assert {c["id"] for c in document["categories"]} == {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, *range(24, 29), 31, 32, 33}
    # Segment colours encode their ids, and the PNG has void pixels (ignored labels).
    annotation = document["annotations"][0]
    with Image.open(out / "cityscapes_panoptic_train" / annotation["file_name"]) as image:
        rgb = np.asarray(image).astype(np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    present, counts = np.unique(ids, return_counts=True)
    area = dict(zip(present.tolist(), counts.tolist()))
    assert 0 in area
    assert {s["id"]: s["area"] for s in annotation["segments_info"]} == {k: v for k, v in area.items() if k}


def test_named_splits_and_workers(trees, tmp_path):
    raw, reference, _ = trees
    out = tmp_path / "val-only"
    done = subprocess.run(
        [console_script("csconv"), "eval-gt", "--cityscapes_root", str(raw), "--output_dir", str(out), "--splits", "val",
         "--workers", "2", "--quiet"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "cityscapes_panoptic_val", "cityscapes_panoptic_val.json", "csconv-prework-manifest.json"
    ]
    assert_same_output(reference / "gtFine", out, ["val"])


@pytest.mark.parametrize("flag", ["--png_compress_level", "--compress_level"])
def test_compress_level_trades_bytes_not_pixels(trees, tmp_path, flag):
    raw, reference, _ = trees
    out = tmp_path / "fast"
    assert eval_gt_command.run(parse("--cityscapes_root", str(raw), "--output_dir", str(out), "--splits", "train", flag, "1")) == 0
    assert_same_output(reference / "gtFine", out, ["train"], same_bytes=False)


@pytest.mark.parametrize("level", ["10", "-1", "fast"])
def test_bad_compress_level_is_one_line_exit_2(trees, tmp_path, level):
    raw, _, _ = trees
    done = subprocess.run(
        [console_script("csconv"), "eval-gt", "--cityscapes_root", str(raw), "--output_dir", str(tmp_path / "o"),
         f"--png_compress_level={level}"],
        capture_output=True, text=True,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"csconv: error: --png_compress_level must be a whole number from 0 to 9 (leave it out for Pillow's "
        f"default, the reference's bytes), got {level if level == 'fast' else int(level)!r}"
    ]
    assert not (tmp_path / "o").exists(), "checked before any work"


def test_split_without_instance_ids_is_an_input_error(trees, tmp_path):
    raw, _, _ = trees
    with pytest.raises(InputError, match="no \\*_instanceIds.png"):
        eval_gt_command.run(parse("--cityscapes_root", str(raw), "--output_dir", str(tmp_path), "--splits", "train_extra"))
    with pytest.raises(InputError, match="no gtFine"):
        eval_gt_command.run(parse("--cityscapes_root", str(tmp_path), "--output_dir", str(tmp_path / "o")))
    with pytest.raises(CsconvError):
        eval_gt_command.run(parse("--cityscapes_root", str(raw), "--output_dir", str(tmp_path), "--splits", ","))


def test_segment_table_matches_masks():
    rng = np.random.default_rng(0)
    ids = rng.choice(np.array([0, 7, 26001, 26002, 24, 11], dtype=np.uint16), size=(37, 53), p=[.3, .3, .1, .1, .1, .1])
    table = segment_table(ids)
    assert table["value"].tolist() == np.unique(ids).tolist()
    for i, value in enumerate(table["value"].tolist()):
        ys, xs = np.nonzero(ids == value)
        assert table["area"][i] == len(ys)
        assert (table["x0"][i], table["x1"][i], table["y0"][i], table["y1"][i]) == (xs.min(), xs.max(), ys.min(), ys.max())
