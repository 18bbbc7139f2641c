"""Semantic label PNGs are the bytes csCreateTrainIdLabelImgs writes, in every sink;
--png_compress_level trades those bytes (never the pixels) for speed.

DeepLab2 stores the prework's `*_gtFine_labelTrainIds.png` as they are, and
cityscapesscripts saves them with Pillow's default settings; the comparison here is
with the files the real tool wrote, on synthetic frames and on the real ones.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import console_script, sink_param, subprocess_env
from csconv.pipeline.convert import convert
from csconv.pipeline.manifest import MANIFEST_NAME
from csconv.core.errors import CsconvError
from csconv.core.records import ConvertOptions, Source, Task
from csconv.plugins import get_sink
from csconv.synthetic import generate_dataset

REAL = Path(__file__).resolve().parents[2] / "shared" / "cityscapes-real"
SINKS = [sink_param(name) for name in ("tfrecord", "parquet", "webdataset", "arrayrecord")]
# The real frames are four of train: the missing splits are warned about, as they should be.
pytestmark = pytest.mark.filterwarnings("ignore:the input holds no '(val|test)' split:UserWarning")
SEMANTIC = ConvertOptions(task=Task.SEMANTIC)
FAST = ConvertOptions(task=Task.SEMANTIC, png_compress_level=1)


@pytest.fixture(scope="module")
def synthetic_prework(tmp_path_factory, prework):
    base = tmp_path_factory.mktemp("labels")
    generate_dataset(base / "raw", {"train": 4, "val": 2, "test": 1}, width=160, height=80, seed=11)
    return base / "raw", prework(base / "raw", base / "prepared")


@pytest.fixture(scope="module")
def real_prework(tmp_path_factory, prework):
    if not REAL.is_dir():
        pytest.skip(f"real Cityscapes frames not present at {REAL}")
    # The prework writes next to its input, so it runs on a copy, never in ../shared.
    return REAL, prework(REAL, tmp_path_factory.mktemp("real") / "prepared")


def reference_labels(prepared: Path) -> dict[str, bytes]:
    return {
        p.name[: -len("_gtFine_labelTrainIds.png")]: p.read_bytes()
        for p in prepared.glob("gtFine/*/*/*_gtFine_labelTrainIds.png")
        if p.parts[-3] != "test"
    }


def written_labels(out: Path, sink_name: str) -> dict[str, bytes]:
    sink = get_sink(sink_name)
    labels = {}
    for path in sorted(out.iterdir()):
        if sink.is_shard_name(path.name):
            for sample in sink.read_shard(str(path)):
                if sample.label is not None:
                    assert sample.label_format == "png"
                    labels[sample.filename] = bytes(sample.label_bytes())
    return labels


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.mark.parametrize("sink", SINKS)
@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_default_labels_are_the_reference_bytes(data, sink, request, tmp_path):
    raw, prepared = request.getfixturevalue(f"{data}_prework")
    convert(str(raw), str(tmp_path), sink_name=sink, options=SEMANTIC, workers=1, show_progress=False)
    expected = reference_labels(prepared)
    assert expected
    got = written_labels(tmp_path, sink)
    assert sorted(got) == sorted(expected)
    for name, label in got.items():
        assert label == expected[name], f"{name}: label PNG bytes differ from csCreateTrainIdLabelImgs's"


@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_a_compress_level_changes_bytes_not_pixels(data, request, tmp_path):
    raw, prepared = request.getfixturevalue(f"{data}_prework")
    convert(str(raw), str(tmp_path), options=FAST, workers=1, show_progress=False)
    expected = reference_labels(prepared)
    got = written_labels(tmp_path, "tfrecord")
    assert sorted(got) == sorted(expected)
    for name, label in got.items():
        assert label != expected[name], f"{name}: level 1 should not give Pillow's default bytes"
        assert np.array_equal(pixels(label), pixels(expected[name])), f"{name}: pixels differ"


def test_labelids_source_honours_the_level(synthetic_prework, tmp_path):
    raw, _ = synthetic_prework
    by_level = {}
    for level in (None, 1):
        out = tmp_path / str(level)
        options = ConvertOptions(task=Task.SEMANTIC, source=Source.LABEL_IDS, png_compress_level=level)
        convert(str(raw), str(out), options=options, workers=1, show_progress=False)
        by_level[level] = written_labels(out, "tfrecord")
    for name, label in by_level[None].items():
        assert np.array_equal(pixels(label), pixels(by_level[1][name]))
        assert label != by_level[1][name]
        reencoded = io.BytesIO()
        Image.open(io.BytesIO(label)).save(reencoded, format="png")
        assert label == reencoded.getvalue(), "default: Pillow's default save"


def test_manifest_records_the_level(synthetic_prework, tmp_path):
    raw, _ = synthetic_prework
    for options, recorded in ((SEMANTIC, None), (FAST, 1)):
        out = tmp_path / str(recorded)
        convert(str(raw), str(out), options=options, workers=1, show_progress=False)
        manifest = json.loads((out / MANIFEST_NAME).read_text())
        assert manifest["options"]["png_compress_level"] == recorded


def test_resume_with_another_level_keeps_no_shard(synthetic_prework, tmp_path):
    raw, prepared = synthetic_prework
    convert(str(raw), str(tmp_path), options=FAST, workers=1, show_progress=False)
    same = convert(str(raw), str(tmp_path), options=FAST, workers=1, show_progress=False, resume_run=True)
    assert same.kept == len(same.shards) > 0, "guard: the same level keeps every shard"
    other = convert(str(raw), str(tmp_path), options=SEMANTIC, workers=1, show_progress=False, resume_run=True)
    assert other.kept == 0
    assert written_labels(tmp_path, "tfrecord") == reference_labels(prepared)
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["options"]["png_compress_level"] is None


@pytest.mark.parametrize("level", [10, -1, True, 1.5, "1"])
def test_options_refuse_a_bad_level(level):
    with pytest.raises(CsconvError, match="--png_compress_level must be a whole number from 0 to 9"):
        ConvertOptions(task=Task.SEMANTIC, png_compress_level=level)


@pytest.mark.parametrize("level", ["10", "-1", "x"])
def test_bad_level_on_the_command_line_is_one_line_exit_2(synthetic_prework, tmp_path, level):
    raw, _ = synthetic_prework
    out = tmp_path / "out"
    done = subprocess.run(
        [console_script("csconv"), "--cityscapes_root", str(raw), "--output_dir", str(out),
         "--create_panoptic_data=false", "--png_compress_level", level],
        env=subprocess_env(), capture_output=True, text=True,
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("csconv: error: --png_compress_level must be"), done.stderr
    assert not out.exists(), "checked before any work"


def test_level_on_the_command_line_reaches_the_labels(synthetic_prework, tmp_path):
    raw, prepared = synthetic_prework
    out = tmp_path / "out"
    subprocess.run(
        [console_script("csconv"), "--cityscapes_root", str(raw), "--output_dir", str(out), "--quiet",
         "--create_panoptic_data=false", "--png-compress-level=9", "--workers=1"],
        env=subprocess_env(), check=True, capture_output=True,
    )
    got, expected = written_labels(out, "tfrecord"), reference_labels(prepared)
    assert all(np.array_equal(pixels(got[n]), pixels(expected[n])) for n in expected)
    assert json.loads((out / MANIFEST_NAME).read_text())["options"]["png_compress_level"] == 9
