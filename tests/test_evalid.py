"""`csconv to-evalid` predictions score 100% with cityscapesscripts' own evaluators.

Predictions equal to the ground truth are read back from a csconv panoptic TFRecord
conversion (treat_crowd_as_ignore=false, so crowd pixels keep their class like the
labelIds ground truth), written as .npy / raw int32 / 16-bit PNG / 8-bit trainId PNG
files, converted with to-evalid and scored by csEvalPixelLevelSemanticLabeling and
csEvalPanopticSemanticLabeling (ground truth: csconv eval-gt).

csEvalPixelLevelSemanticLabeling calls np.in1d, removed in numpy 2.4: when the console
script fails for exactly that reason, the same script module is run with the one-line
alias numpy.in1d = numpy.isin (same semantics) and nothing else changed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import console_script
from PIL import Image

from csconv.cli import to_evalid as to_evalid_command
from csconv.evaluation import ground_truth, predictions
from csconv.pipeline.convert import convert
from csconv.core.errors import CsconvError, InputError
from csconv.core.labels import BY_NAME
from csconv.core.records import ConvertOptions
from csconv.plugins import get_sink
from csconv.synthetic import generate_dataset
from csconv.inspection.verify import load_manifest


def parse(*argv: str):
    parser = argparse.ArgumentParser(prog="csconv")
    to_evalid_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["to-evalid", *argv])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("evalid")
    root = base / "cityscapes"
    generate_dataset(root, {"val": 4}, width=192, height=96, seed=11)
    records = base / "tfrecord"
    with pytest.warns(UserWarning):  # 4 val images, not 500
        convert(str(root), str(records), sink_name="tfrecord", splits=["val"], show_progress=False,
                options=ConvertOptions(treat_crowd_as_ignore=False), num_shards=3)
    manifest = load_manifest(records)
    sink = get_sink(manifest["sink"])
    samples = [s for shard in manifest["splits"]["val"]["shards"] for s in sink.read_shard(str(records / shard["name"]))]
    assert len(samples) == 4 and all(s.label_format == "raw" for s in samples)

    semantic_in, panoptic_in = base / "pred_semantic", base / "pred_panoptic"
    for sample in samples:
        city = sample.filename.split("_")[0]
        (semantic_in / city).mkdir(parents=True, exist_ok=True)
        (panoptic_in / city).mkdir(parents=True, exist_ok=True)
        Image.fromarray((sample.label // 1000).astype(np.uint8), "L").save(semantic_in / city / f"{sample.filename}_pred.png")
    # One frame per input format.
    # (255000, void, needs more than 16 bits: PNGs hold it as RGBA int32 bytes or R + 256 G + 65536 B.)
    formats = [".npy", ".raw", "rgba", "rgb"]
    for sample, kind in zip(samples, formats):
        ext = kind if kind.startswith(".") else ".png"
        target = panoptic_in / sample.filename.split("_")[0] / f"{sample.filename}_leftImg8bit{ext}"
        if kind == ".npy":
            np.save(target, sample.label)
        elif kind == ".raw":
            sample.label.astype("<i4").tofile(target)
        elif kind == "rgba":
            Image.fromarray(sample.label.astype("<i4").view(np.uint8).reshape(*sample.label.shape, 4), "RGBA").save(target)
        else:
            rgb = sample.label.astype("<u4").view(np.uint8).reshape(*sample.label.shape, 4)[..., :3]
            Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(target)

    gt = base / "gt"
    ground_truth.eval_gt(str(root), str(gt), ["val"])
    return dict(base=base, root=root, samples=samples, semantic_in=semantic_in, panoptic_in=panoptic_in, gt=gt)


def run_pixel_evaluator(root: Path, results: Path, export: Path) -> dict:
    env = dict(os.environ, CITYSCAPES_DATASET=str(root), CITYSCAPES_RESULTS=str(results), CITYSCAPES_EXPORT_DIR=str(export))
    done = subprocess.run([console_script("csEvalPixelLevelSemanticLabeling")], env=env, capture_output=True, text=True)
    if done.returncode != 0 or not (export / "resultPixelLevelSemanticLabeling.json").exists():
        output = done.stdout + done.stderr
        assert "has no attribute 'in1d'" in output, f"csEvalPixelLevelSemanticLabeling failed:\n{output[-3000:]}"
        shim = ("import numpy, runpy; numpy.in1d = numpy.isin; "
                "runpy.run_module('cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling', run_name='__main__')")
        done = subprocess.run([sys.executable, "-c", shim], env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"evalPixelLevelSemanticLabeling (np.in1d alias) failed:\n{done.stdout[-3000:]}\n{done.stderr}"
    with open(export / "resultPixelLevelSemanticLabeling.json") as f:
        return json.load(f)


def run_panoptic_evaluator(gt: Path, prediction_json: Path, results_file: Path) -> dict:
    done = subprocess.run(
        [console_script("csEvalPanopticSemanticLabeling"), "--gt-json-file", str(gt / "cityscapes_panoptic_val.json"),
         "--prediction-json-file", str(prediction_json), "--results_file", str(results_file)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, f"csEvalPanopticSemanticLabeling failed:\n{done.stdout[-3000:]}\n{done.stderr}"
    with open(results_file) as f:
        return json.load(f)


def test_semantic_predictions_score_miou_1(setup, tmp_path):
    out = tmp_path / "results"
    assert to_evalid_command.run(parse(str(setup["semantic_in"]), "--output_dir", str(out), "--kind", "semantic")) == 0
    written = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    assert len(written) == 4 and all(p.parent.name in p.name for p in written)  # city folders kept
    result = run_pixel_evaluator(setup["root"], out, tmp_path)
    scores = result["classScores"]
    present = {name for name, score in scores.items() if not math.isnan(score)}
    assert {"road", "car", "person", "sky"} <= present
    assert all(scores[name] == 1.0 for name in present), {n: scores[n] for n in present if scores[n] != 1.0}
    assert result["averageScoreClasses"] == 1.0
    assert result["averageScoreInstClasses"] == 1.0


def test_panoptic_predictions_score_pq_100(setup, tmp_path):
    out = tmp_path / "results"
    h, w = setup["samples"][0].height, setup["samples"][0].width
    assert to_evalid_command.run(parse(str(setup["panoptic_in"]), "--output_dir", str(out), "--kind", "panoptic",
                            "--height", str(h), "--width", str(w))) == 0
    prediction_json = out / "cityscapes_panoptic_val.json"
    with open(prediction_json) as f:
        document = json.load(f)
    assert sorted(a["image_id"] for a in document["annotations"]) == sorted(s.filename for s in setup["samples"])
    result = run_panoptic_evaluator(setup["gt"], prediction_json, tmp_path / "pq.json")
    with open(setup["gt"] / "cityscapes_panoptic_val.json") as f:
        gt = json.load(f)
    present = {s["category_id"] for a in gt["annotations"] for s in a["segments_info"] if not s["iscrowd"]}
    assert {24, 26, 7, 23} <= present
    assert result["All"]["n"] == len(present) and result["All"]["pq"] == pytest.approx(1.0)
    assert result["Things"]["pq"] == pytest.approx(1.0) and result["Stuff"]["pq"] == pytest.approx(1.0)
    for category in present:
        assert result["per_class"][str(category)]["pq"] == pytest.approx(1.0), category


def test_panoptic_evaluation_notices_merged_instances(setup, tmp_path):
    """Control: the same check fails when car instances are merged (instance ids dropped)."""
    source = tmp_path / "pred"
    source.mkdir()
    car = BY_NAME["car"].train_id
    for sample in setup["samples"]:
        label = sample.label.copy()
        label[label // 1000 == car] = car * 1000
        np.save(source / f"{sample.filename}.npy", label)
    out = tmp_path / "results"
    assert to_evalid_command.run(parse(str(source), "--output_dir", str(out), "--kind", "panoptic")) == 0
    result = run_panoptic_evaluator(setup["gt"], out / "cityscapes_panoptic_val.json", tmp_path / "pq.json")
    assert result["per_class"][str(BY_NAME["car"].id)]["pq"] < 1.0
    assert result["Things"]["pq"] < 1.0


def test_panoptic_segments_rules():
    person, road, sky = BY_NAME["person"], BY_NAME["road"], BY_NAME["sky"]
    p = np.array(
        [
            [person.train_id * 1000 + 1, person.train_id * 1000 + 1, person.train_id * 1000 + 2, 255000],
            [person.train_id * 1000, person.train_id * 1000, road.train_id * 1000, road.train_id * 1000 + 3],
            [sky.train_id * 1000, 255000, 255000, 255000],
        ]
    )
    rgb, segments = predictions.panoptic_to_coco(p, "test")
    rgb = rgb.astype(np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    by_id = {s["id"]: s for s in segments}
    assert sorted((s["category_id"], s["area"], s["iscrowd"]) for s in segments) == [
        (road.id, 2, 0), (sky.id, 1, 0), (person.id, 1, 0), (person.id, 2, 0), (person.id, 2, 0)
    ]
    assert (ids[p == 255000] == 0).all() and 0 not in by_id
    assert ids[0, 0] == ids[0, 1] != ids[0, 2] and ids[1, 0] == ids[1, 1] not in (ids[0, 0], ids[0, 2])
    assert ids[1, 2] == ids[1, 3]  # a stuff class is one segment whatever its instance id
    assert by_id[ids[0, 2]]["bbox"] == [2, 0, 1, 1] and by_id[ids[1, 0]]["bbox"] == [0, 1, 2, 1]


def test_semantic_mapping_and_errors(tmp_path):
    train_ids = np.array([[0, 13, 18, 255]], dtype=np.uint8)
    assert predictions.semantic_to_label_ids(train_ids, "x").tolist() == [[7, 26, 33, 0]]
    Image.fromarray(np.array([[0, 19]], dtype=np.uint8)).save(tmp_path / "bad_000000_000000.png")
    with pytest.raises(InputError, match="19"):
        to_evalid_command.run(parse(str(tmp_path / "bad_000000_000000.png"), "--output_dir", str(tmp_path / "o"), "--kind", "semantic"))
    np.zeros(8, "<i4").tofile(tmp_path / "a_000000_000000.raw")
    with pytest.raises(CsconvError, match="--height and --width"):
        to_evalid_command.run(parse(str(tmp_path / "a_000000_000000.raw"), "--output_dir", str(tmp_path / "o"), "--kind", "panoptic"))
    with pytest.raises(InputError, match="bytes"):
        to_evalid_command.run(parse(str(tmp_path / "a_000000_000000.raw"), "--output_dir", str(tmp_path / "o"), "--kind", "panoptic",
                         "--height", "3", "--width", "3"))
    sixteen = np.array([[13001, 13002], [7000, 21000]], dtype=np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "c_000000_000000.png")
    assert predictions.read_prediction(str(tmp_path / "c_000000_000000.png")).tolist() == sixteen.tolist()
    assert predictions.image_id_of("x/frankfurt_000000_000294_leftImg8bit.npy") == "frankfurt_000000_000294"
