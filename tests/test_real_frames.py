"""csconv on four real Cityscapes frames, against the reference chain run on them.

Synthetic frames cannot show what the real ones do: polygons of hundreds of vertices
drawn over each other in file order, labelIds/instanceIds rasterized by other software
than Pillow, a `cargroup` crowd region, ancillary PNG chunks. The frames live in
../shared/cityscapes-real (train split, aachen, 2048x1024); Cityscapes' terms forbid
redistributing them, so the tests read them from there, work on copies in tmp_path,
and skip when the folder is absent. Nothing of them goes into the repository.

The real frames are only four of the train split, so every conversion warns about the
split size; that is expected.
"""

from __future__ import annotations

import os
import shutil
import stat
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import oracle
from conftest import read_tfrecord, run_csconv_subprocess, run_prework
from test_archives import make_archives
from test_evalgt import assert_same_output, run_reference
from test_reference_identity import assert_same_records
from tf_copy import LABEL_KEY, copy_through_tensorflow, set_label_pixel

REAL = Path(__file__).resolve().parents[2] / "shared" / "cityscapes-real"
FRAMES = [f"aachen_{seq:06d}_000019" for seq in range(4)]
CROWDED = "aachen_000002_000019"  # its polygons hold a 'cargroup'

pytestmark = pytest.mark.skipif(
    not REAL.is_dir(),
    reason=f"{REAL} is absent: the real Cityscapes frames are not redistributable and live outside the repository",
)

# mode -> (csconv flags, oracle create_panoptic_data, oracle treat_crowd_as_ignore)
MODES = {
    "panoptic": ((), True, True),
    "panoptic-crowd=false": (("--treat_crowd_as_ignore=false",), True, False),
    "semantic": (("--create_panoptic_data=false",), False, True),
}


def writable_copy(source: Path, target: Path) -> Path:
    """A copy the prework can write into: the shared originals are read-only."""
    shutil.copytree(source, target, copy_function=shutil.copyfile, ignore=shutil.ignore_patterns("SOURCES.md"))
    for folder, _, _ in os.walk(target):
        os.chmod(folder, os.stat(folder).st_mode | stat.S_IWUSR)
    return target


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The frames as the download has them (a tree and the two zips), and a prework copy."""
    base = tmp_path_factory.mktemp("real")
    raw = writable_copy(REAL, base / "raw")
    assert sorted(p.name[: -len("_leftImg8bit.png")] for p in raw.glob("leftImg8bit/train/aachen/*.png")) == FRAMES

    prepared = run_prework(raw, base / "prepared")
    make_archives(raw, base / "download")
    return SimpleNamespace(tree=raw, download=base / "download", prepared=prepared)


@pytest.fixture(scope="module")
def converted(real, tmp_path_factory):
    """`converted(source, flags)` -> csconv's output folder, converted once per key."""
    cache: dict[tuple, Path] = {}

    def get(source: str, flags: tuple[str, ...]) -> Path:
        if (source, flags) not in cache:
            root = real.tree if source == "tree" else real.download
            out = tmp_path_factory.mktemp(f"out-{source}")
            run_csconv_subprocess(
                [f"--cityscapes_root={root}", f"--output_dir={out}", "--workers", "2", "--quiet", *flags]
            )
            cache[(source, flags)] = out
        return cache[(source, flags)]

    return get


@pytest.fixture(scope="module")
def expected(real):
    @lru_cache(maxsize=None)
    def get(panoptic: bool, crowd_ignore: bool) -> dict:
        return oracle.all_shards(str(real.prepared), panoptic, crowd_ignore, splits=("train",))

    return get


@pytest.mark.parametrize("source", ["tree", "zips"])
@pytest.mark.parametrize("mode", list(MODES))
def test_records_equal_the_reference(mode, source, converted, expected, tfrecords):
    """Every field of every record, read back by TensorFlow; labels byte for byte.

    For the semantic task that means the label PNG is the very file
    csCreateTrainIdLabelImgs wrote: the same polygons drawn the same way, and the same
    bytes from the same Pillow save.
    """
    flags, panoptic, crowd_ignore = MODES[mode]
    out = converted(source, flags)
    want = expected(panoptic, crowd_ignore)
    assert_same_records(out, want, tfrecords)
    frames = 0
    for name, records in sorted(want.items()):
        for got, record in zip(read_tfrecord(out / name), records):
            frames += 1
            label = got[LABEL_KEY]
            assert label == record.label, (
                f"{name} ({record.filename.decode()}): {LABEL_KEY} is not byte-identical to the reference's "
                f"({len(label)} vs {len(record.label)} bytes)"
            )
    assert frames == len(FRAMES)


def test_crowd_setting_matters_on_the_real_frames(expected):
    """Guard: the crowd mode is exercised, on the frame with a cargroup and only there."""
    ignore, keep = expected(True, True), expected(True, False)
    differing = {
        a.filename.decode() for name in ignore for a, b in zip(ignore[name], keep[name]) if a.label != b.label
    }
    assert differing == {CROWDED}


def test_eval_gt_is_byte_identical_to_cs_create_panoptic_imgs(real, tmp_path):
    """csconv eval-gt writes the very JSON and PNG files csCreatePanopticImgs writes (original ids)."""
    reference = writable_copy(real.tree, tmp_path / "reference")
    run_reference(reference, ["train"])
    out = tmp_path / "ours"
    run_csconv_subprocess(["eval-gt", "--cityscapes_root", str(real.tree), "--output_dir", str(out), "--splits", "train"])
    # First the same content (a failure there says what differs), then the same bytes.
    assert_same_output(reference / "gtFine", out, ["train"])
    name = "cityscapes_panoptic_train"
    assert (out / f"{name}.json").read_bytes() == (reference / "gtFine" / f"{name}.json").read_bytes()
    pngs = sorted(p.name for p in (reference / "gtFine" / name).iterdir())
    assert pngs == [f"{frame}_gtFine_panoptic.png" for frame in FRAMES]
    for png in pngs:
        ours, theirs = (out / name / png).read_bytes(), (reference / "gtFine" / name / png).read_bytes()
        assert ours == theirs, f"{png}: pixels equal but bytes differ ({len(ours)} vs {len(theirs)} bytes)"


def test_labelids_source_is_not_the_reference(real, converted, tfrecords):
    """`--source labelids` remaps the shipped labelIds, which other software rasterized:
    along polygon edges it differs from the labels csCreateTrainIdLabelImgs draws.

    Measured on these frames (pixels differing from the prework's labelTrainIds):
    aachen_000000_000019 10376, aachen_000001_000019 12000, aachen_000002_000019 7150,
    aachen_000003_000019 6945 (of 2097152 each, about 0.3 to 0.6 %).
    """
    out = converted("tree", ("--create_panoptic_data=false", "--source", "labelids"))
    differing = {}
    for shard in sorted(out.glob("train-*.tfrecord")):
        for record in tfrecords.read(shard):
            frame = record["image/filename"].decode()
            reference = real.prepared / "gtFine" / "train" / "aachen" / f"{frame}_gtFine_labelTrainIds.png"
            ours = tfrecords.png_label(record[LABEL_KEY])
            theirs = np.asarray(Image.open(reference))
            assert ours.shape == theirs.shape == (1024, 2048)
            differing[frame] = int(np.count_nonzero(ours != theirs))
    assert sorted(differing) == FRAMES
    assert all(count > 1000 for count in differing.values()), differing


def test_verify_against_a_tensorflow_written_copy(converted, tmp_path, capsys):
    """DeepLab2's output is written by TensorFlow: verify --against compares it on features."""
    from csconv.cli import main

    out = converted("tree", ())
    copy = tmp_path / "deeplab2"
    assert copy_through_tensorflow(out, copy) == len(FRAMES)
    assert main(["verify", str(out), "--against", str(copy)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"OK: 1 split, 10 shards, 4 records equal to {copy}'s"

    changed = {}

    def edit(shard, index, example):
        if example.features.feature["image/filename"].bytes_list.value[0].decode() == CROWDED:
            changed["shard"], changed["index"] = shard, index
            changed["old"] = set_label_pixel(example, 700, 1500, 13999)

    edited = tmp_path / "edited"
    copy_through_tensorflow(out, edited, edit)
    assert main(["verify", str(out), "--against", str(edited)]) == 1
    text = capsys.readouterr().out
    assert (
        f"  split train, shard {changed['shard']}, record {changed['index']} ({CROWDED}): "
        f"feature {LABEL_KEY}: 1 pixel differs (raw int32 2048x1024), first at (row 700, col 1500): "
        f"{changed['old']} in {out}, 13999 in {edited}\n"
    ) in text, text
