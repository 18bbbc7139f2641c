"""Shared fixtures: small synthetic Cityscapes roots, the real cityscapesscripts prework
run on copies of them, running csconv, and reading TFRecords back with TensorFlow.

TensorFlow is imported lazily (only by `read_tfrecord`), since importing it takes
seconds and most tests never need it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BIN_DIR = Path(sys.executable).parent
SPLITS = ("train", "val", "test")


def console_script(name: str) -> str:
    """A console script of this Python environment (next to sys.executable, else PATH)."""
    candidate = BIN_DIR / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"console script {name!r} not found next to {sys.executable} nor on PATH")
    return found


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra)
    return env


# --- the reference prework ----------------------------------------------------------

def run_prework(source_root: Path | str, target_root: Path | str) -> Path:
    """Copy `source_root` to `target_root` and run the real cityscapesscripts prework there.

    csCreateTrainIdLabelImgs draws every *_gtFine_labelTrainIds.png from the polygons;
    csCreatePanopticImgs --use-train-id writes gtFine/cityscapes_panoptic_<split>_trainId.json
    and its PNG folder. The latter stops (exit 255) on a split without *_instanceIds.png,
    so it is only given the splits that have some.
    """
    source_root, target_root = Path(source_root), Path(target_root)
    shutil.copytree(source_root, target_root)
    env = subprocess_env(CITYSCAPES_DATASET=str(target_root))
    done = subprocess.run(
        [console_script("csCreateTrainIdLabelImgs")], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"csCreateTrainIdLabelImgs failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    splits = [s for s in SPLITS if any((target_root / "gtFine" / s).glob("*/*_gtFine_instanceIds.png"))]
    if splits:
        done = subprocess.run(
            [
                console_script("csCreatePanopticImgs"), "--use-train-id",
                "--dataset-folder", str(target_root / "gtFine"),
                "--output-folder", str(target_root / "gtFine"),
                "--set-names", *splits,
            ],
            env=env, capture_output=True, text=True,
        )
        if done.returncode != 0:
            pytest.fail(f"csCreatePanopticImgs failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return target_root


@pytest.fixture(scope="session")
def prework():
    return run_prework


# --- synthetic roots ----------------------------------------------------------------

@dataclass(frozen=True)
class Roots:
    raw: Path  # the synthetic download only (no prework outputs)
    prepared: Path  # a copy with the cityscapesscripts prework run on it
    sizes: dict


# name -> generate_dataset keyword arguments. Small frames keep the suite fast.
DATASETS = {
    # Split sizes that are not multiples of 10 and below 10 (so empty shards appear);
    # non-RGB leftImg8bit frames in every split; 'weimar' vs 'weimar0' to exercise
    # the full-path sort order.
    "main": dict(
        split_sizes={"train": 13, "val": 3, "test": 2},
        width=96, height=48, seed=7,
        cities={"train": ["aachen", "weimar", "weimar0"], "val": ["frankfurt", "lindau"]},
        image_modes={1: "L", 2: "P", 4: "RGBA"},
    ),
    # A tiny frame: 8x4 pixels.
    "tiny": dict(
        split_sizes={"train": 2, "val": 1, "test": 1},
        width=8, height=4, seed=3,
        image_modes={1: "P"},
    ),
}


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """`synthetic(name)` -> Roots for a dataset of DATASETS, generated once per session."""
    from csconv.synthetic import generate_dataset

    cache: dict[str, Roots] = {}

    def get(name: str) -> Roots:
        if name not in cache:
            spec = DATASETS[name]
            base = tmp_path_factory.mktemp(f"synthetic-{name}")
            raw = base / "raw"
            generate_dataset(raw, **spec)
            prepared = run_prework(raw, base / "prepared")
            cache[name] = Roots(raw=raw, prepared=prepared, sizes=dict(spec["split_sizes"]))
        return cache[name]

    return get


# --- running csconv -----------------------------------------------------------------

def run_csconv_subprocess(args: list[str], python_flags: tuple[str, ...] = (), check: bool = True):
    """Run the real `csconv` console script (or `python <flags> -m csconv` when flags are given)."""
    if python_flags:
        command = [sys.executable, *python_flags, "-m", "csconv", *args]
    else:
        command = [console_script("csconv"), *args]
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def run_csconv_inprocess(args: list[str]) -> int:
    from csconv import cli

    return cli.main(list(args))


@pytest.fixture(scope="session")
def csconv_run():
    """`csconv_run(args, in_subprocess=True)`: run a conversion, failing the test on a non-zero exit.

    In-process runs should pass `--workers 1`: forking a pytest process that has
    imported TensorFlow is asking for trouble.
    """

    def run(args: list[str], in_subprocess: bool = True):
        if in_subprocess:
            return run_csconv_subprocess(args)
        rc = run_csconv_inprocess(args)
        assert rc == 0, f"csconv.cli.main({args!r}) returned {rc}"
        return rc

    return run


# --- reading TFRecords back with TensorFlow -------------------------------------------

def deeplab2_feature_spec(tf) -> dict:
    """DeepLab2's feature keys for tf.io.parse_single_example; the label keys are optional."""
    return {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        "image/format": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/channels": tf.io.FixedLenFeature([], tf.int64),
        "image/segmentation/class/encoded": tf.io.FixedLenFeature([], tf.string, default_value=b""),
        "image/segmentation/class/format": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    }


def read_tfrecord(path: Path | str) -> list[dict]:
    """The records of one TFRecord file, parsed by TensorFlow with DeepLab2's keys.

    Each record is a dict of the parsed values (bytes / int), plus 'keys': the set of
    feature keys the serialized tf.train.Example actually holds.
    """
    import tensorflow as tf

    return parse_examples(serialized.numpy() for serialized in tf.data.TFRecordDataset(str(path)))


def parse_examples(serialized_examples) -> list[dict]:
    """Serialized tf.train.Examples parsed by TensorFlow with DeepLab2's keys, as read_tfrecord gives them."""
    import tensorflow as tf

    spec = deeplab2_feature_spec(tf)
    records = []
    for serialized in serialized_examples:
        parsed = tf.io.parse_single_example(serialized, spec)
        record = {key: value.numpy() for key, value in parsed.items()}
        for key in ("image/height", "image/width", "image/channels"):
            record[key] = int(record[key])
        example = tf.train.Example.FromString(serialized)
        record["keys"] = set(example.features.feature.keys())
        records.append(record)
    return records


def sink_param(name: str):
    """A sink name for pytest.mark.parametrize, skipped where its optional package is missing."""
    from csconv import plugins

    missing = plugins.sinks()[name].sink_class.missing_requirement()
    return pytest.param(name, marks=pytest.mark.skipif(missing is not None, reason=missing or ""))


def decode_raw_label(label: bytes, height: int, width: int):
    """A raw panoptic label decoded by TensorFlow as int32, shaped HxW."""
    import tensorflow as tf

    return tf.io.decode_raw(label, tf.int32).numpy().reshape(height, width)


def decode_png_label(label: bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(label)))


@pytest.fixture(scope="session")
def tfrecords():
    """Namespace of the TensorFlow-based readers."""

    class Readers:
        read = staticmethod(read_tfrecord)
        raw_label = staticmethod(decode_raw_label)
        png_label = staticmethod(decode_png_label)

    return Readers
