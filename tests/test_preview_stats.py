"""`csconv preview` and `csconv stats` on outputs of different sinks."""

from __future__ import annotations

import argparse
import io
import re

import numpy as np
import pytest
from PIL import Image

from csconv.cli import preview as preview_command
from csconv.cli import stats as stats_command
from csconv.inspection import preview, stats
from csconv.pipeline.convert import convert
from csconv.core.errors import CsconvError
from csconv.core.labels import BY_NAME, IGNORE_LABEL, train_id_palette
from csconv.core.records import ConvertOptions, Task
from csconv.plugins import get_sink
from csconv.synthetic import generate_dataset
from csconv.inspection.verify import load_manifest

W, H = 128, 64


def parse(*argv: str):
    parser = argparse.ArgumentParser(prog="csconv")
    commands = parser.add_subparsers(dest="command")
    preview_command.add_parser(commands)
    stats_command.add_parser(commands)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("preview")
    root = base / "cityscapes"
    generate_dataset(root, {"train": 4, "val": 2, "test": 1}, width=W, height=H, seed=2)
    made = {}
    with pytest.warns(UserWarning):  # split sizes differ from the official ones
        convert(str(root), str(base / "panoptic"), sink_name="tfrecord", show_progress=False)
        convert(str(root), str(base / "semantic"), sink_name="webdataset", show_progress=False,
                options=ConvertOptions(task=Task.SEMANTIC), num_shards=3)
    made["panoptic"], made["semantic"] = base / "panoptic", base / "semantic"
    return made


def read_back(output_dir, split):
    """Every sample of a split, read shard by shard as the manifest lists them."""
    manifest = load_manifest(output_dir)
    sink = get_sink(manifest["sink"])
    return [s for shard in manifest["splits"][split]["shards"] for s in sink.read_shard(str(output_dir / shard["name"]))]


def labels_of(sample):
    if isinstance(sample.label, np.ndarray):
        return sample.label // 1000, sample.label % 1000
    return np.asarray(Image.open(io.BytesIO(sample.label))), None


# --- preview ------------------------------------------------------------------------

def test_preview_panoptic_side_by_side(outputs, tmp_path):
    out = tmp_path / "frame.png"
    index = 1  # train frame 1: the crowded one, in the second shard
    assert preview_command.run(parse("preview", str(outputs["panoptic"]), "--split", "train", "--index", str(index), "-o", str(out))) == 0
    sample = read_back(outputs["panoptic"], "train")[index]
    semantic, instance = labels_of(sample)
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[1] == 2 * W and picture.shape[0] > H

    # Left: the image itself.
    image = np.asarray(Image.open(io.BytesIO(sample.image)).convert("RGB"))
    assert np.array_equal(picture[:H, :W], image)

    # Right: palette colours away from instance outlines, white on them.
    palette = train_id_palette()
    edges = preview.outline_mask(instance)
    road = BY_NAME["road"].train_id
    ys, xs = np.nonzero((semantic == road) & ~edges)
    y, x = ys[len(ys) // 2], xs[len(xs) // 2]
    assert tuple(picture[y, W + x]) == (128, 64, 128) == tuple(palette[road])
    label_panel = picture[:H, W:]
    assert np.array_equal(label_panel[~edges], palette[semantic][~edges])
    assert edges.any() and (label_panel[edges] == 255).all()
    ignored = (semantic == IGNORE_LABEL) & ~edges
    assert ignored.any() and (label_panel[ignored] == 0).all()

    # Legend below: drawn, with the swatch colour of a class present.
    legend = picture[H:]
    assert (legend != preview.BACKGROUND).any(axis=-1).sum() > 100
    car = tuple(palette[BY_NAME["car"].train_id])
    assert (legend == car).all(axis=-1).sum() >= 50  # a 12x12 swatch, minus nothing
    truck_absent = BY_NAME["truck"].train_id not in np.unique(semantic)
    if truck_absent:
        assert not (legend == tuple(palette[BY_NAME["truck"].train_id])).all(axis=-1).any()


def test_preview_semantic_webdataset_stacked(outputs, tmp_path):
    out = tmp_path / "frame.png"
    assert preview_command.run(parse("preview", str(outputs["semantic"]), "--split", "val", "--index", "1", "-o", str(out),
                             "--layout", "stacked")) == 0
    sample = read_back(outputs["semantic"], "val")[1]
    semantic, _ = labels_of(sample)
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[1] == W and picture.shape[0] > 2 * H
    assert np.array_equal(picture[H:2 * H], train_id_palette()[semantic])  # no outlines without instances
    assert (picture[2 * H:] != preview.BACKGROUND).any(axis=-1).sum() > 100


def test_preview_errors(outputs, tmp_path):
    with pytest.raises(CsconvError, match="out of range"):
        preview_command.run(parse("preview", str(outputs["panoptic"]), "--split", "val", "--index", "2", "-o", str(tmp_path / "x.png")))
    with pytest.raises(CsconvError, match="no label"):
        preview_command.run(parse("preview", str(outputs["panoptic"]), "--split", "test", "-o", str(tmp_path / "x.png")))
    with pytest.raises(CsconvError, match="no split"):
        preview_command.run(parse("preview", str(outputs["panoptic"]), "--split", "nope", "-o", str(tmp_path / "x.png")))


# --- stats --------------------------------------------------------------------------

def direct_stats(output_dir, split):
    pixels = np.zeros(256, dtype=np.int64)
    instances = np.zeros(256, dtype=np.int64)
    for sample in read_back(output_dir, split):
        semantic, instance = labels_of(sample)
        for t in np.unique(semantic):
            pixels[t] += np.count_nonzero(semantic == t)
            if instance is not None:
                instances[t] += len(set(instance[(semantic == t) & (instance > 0)].tolist()))
    return pixels, instances


@pytest.mark.parametrize("kind", ["panoptic", "semantic"])
def test_stats_table_equals_direct_computation(outputs, kind, capsys):
    assert stats_command.run(parse("stats", str(outputs[kind]))) == 0
    text = capsys.readouterr().out
    for split in ("train", "val"):
        pixels, instances = direct_stats(outputs[kind], split)
        block = text.split(f"{split}: ", 1)[1]
        rows = {}
        for line in block.splitlines()[2:22]:
            name, train_id, share, count = re.match(r"\s+(.+?)\s+(\d+)\s+([\d.]+)\s+(\S+)$", line).groups()
            rows[int(train_id)] = (float(share), count)
        assert len(rows) == 20
        for t, (share, count) in rows.items():
            assert share == pytest.approx(100 * pixels[t] / pixels.sum(), abs=5e-4)
            if kind == "panoptic" and t != IGNORE_LABEL:
                assert int(count) == instances[t]
            else:
                assert count == "-"
    assert "test: 1 frames, 0 labelled" in text
    computed = {s.split: s for s in stats.compute_stats(str(outputs[kind]))}
    pixels, instances = direct_stats(outputs[kind], "train")
    assert np.array_equal(computed["train"].pixels, pixels)
    if kind == "panoptic":
        assert np.array_equal(computed["train"].instances, instances) and instances[BY_NAME["car"].train_id] > 50


def test_stats_plot(outputs, tmp_path, capsys):
    out = tmp_path / "stats.png"
    assert stats_command.run(parse("stats", str(outputs["panoptic"]), "--plot", str(out), "--splits", "train,val,test")) == 0
    all_stats = stats.compute_stats(str(outputs["panoptic"]))
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[:2][::-1] == stats.chart_size(all_stats)
    palette = train_id_palette()
    bars = stats.bar_geometry(all_stats)
    assert len(bars) == 2 * 20  # train and val; test has no labels
    drawn = 0
    for split, t, share, (x0, y0, x1, y1) in bars:
        if x1 >= x0:
            drawn += 1
            assert tuple(picture[(y0 + y1) // 2, (x0 + x1) // 2]) == tuple(palette[t]), (split, t)
    assert drawn >= 20
    # The class names are written left of the bars.
    assert (picture[:, : stats.MARGIN + stats.NAME_W] != stats.CHART_BG).any(axis=-1).sum() > 500
