"""The Python API: csconv.convert() is the command line's run, csconv.samples() the core's
samples with nothing written, csconv.read() random access to any sink's output, usable
as a PyTorch Dataset and a Grain data source."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import csconv
from conftest import read_tfrecord, sink_param, subprocess_env
from csconv.core.labels import IGNORE_LABEL
from csconv.plugins import sinks
from csconv.sinks.base import MaterialisedShard, Sink
from csconv.sinks.tfrecord import TFRecordSink

SPLITS = {"train": 13, "val": 3, "test": 2}
SINK_NAMES = ("tfrecord", "parquet", "webdataset", "arrayrecord")
pytestmark = pytest.mark.filterwarnings("ignore::csconv.SplitSizeWarning")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from csconv.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("api") / "cityscapes"
    generate_dataset(root, SPLITS, width=96, height=48, seed=5, image_modes={2: "L", 5: "P"},
                     cities={"train": ["aachen", "weimar", "weimar0"]})
    return root


@pytest.fixture(scope="module")
def outputs(root, tmp_path_factory):
    """The same root converted with every sink installed here, through the API."""
    base = tmp_path_factory.mktemp("api-out")
    made = {}
    for name in SINK_NAMES:
        if sinks()[name].sink_class.missing_requirement() is None:
            csconv.convert(root, base / name, sink=name, workers=2)
            made[name] = base / name
    return made


def reference(outputs, split: str) -> list:
    """The split's samples from the TFRecord shards, in record order, read by csconv's TFRecord reader."""
    sink = TFRecordSink()
    return [s for k in range(10) for s in sink.read_shard(str(outputs["tfrecord"] / sink.shard_name(split, k, 10)))]


def files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- convert() --------------------------------------------------------------------------


@pytest.mark.parametrize("cli_flags, api_options", [
    ([], {}),
    (["--create_panoptic_data=false", "--num_shards", "3", "--splits", "train,val", "--png_compress_level", "1",
      "--sink", "webdataset", "--sha256"],
     dict(create_panoptic_data=False, num_shards=3, splits=["train", "val"], png_compress_level=1,
          sink="webdataset", sha256=True)),
    (["--treat_crowd_as_ignore=false", "--label_divisor", "256", "--splits", "val", "--max_pixels", "5000"],
     dict(treat_crowd_as_ignore=False, label_divisor=256, splits="val", max_pixels=5000)),
], ids=["defaults", "semantic-webdataset", "crowd-divisor"])
def test_convert_writes_the_command_lines_bytes(root, tmp_path, cli_flags, api_options):
    done = subprocess.run(
        [sys.executable, "-m", "csconv", "--cityscapes_root", str(root), "--output_dir", str(tmp_path / "cli"),
         "--workers", "2", "--quiet", *cli_flags],
        capture_output=True, text=True, env=subprocess_env(),
    )
    assert done.returncode == 0, done.stderr
    summary = csconv.convert(str(root), tmp_path / "api", workers=1, **api_options)
    assert files(tmp_path / "api") == files(tmp_path / "cli")
    assert isinstance(summary, csconv.RunSummary)
    written = [n for n in os.listdir(tmp_path / "api") if n != "csconv-manifest.json"]
    assert len(summary.shards) == len(written)
    assert summary.bytes == sum((tmp_path / "api" / n).stat().st_size for n in written)
    assert summary.records > 0 and summary.seconds > 0 and summary.skipped == []


def test_convert_errors_are_the_command_lines_one_line_messages(root, tmp_path):
    missing = tmp_path / "nowhere"
    done = subprocess.run([sys.executable, "-m", "csconv", "--cityscapes_root", str(missing), "--output_dir",
                           str(tmp_path / "o")], capture_output=True, text=True, env=subprocess_env())
    (line,) = done.stderr.strip().splitlines()
    with pytest.raises(csconv.CsconvError) as raised:
        csconv.convert(missing, tmp_path / "o")
    assert f"csconv: error: {raised.value}" == line
    with pytest.raises(csconv.CsconvError, match="--label_divisor must be between"):
        csconv.convert(root, tmp_path / "o", label_divisor=0)
    with pytest.raises(csconv.CsconvError, match="pixels, more than --max_pixels"):
        csconv.convert(root, tmp_path / "o", max_pixels=4000, workers=1)  # frames are 96x48
    with pytest.raises(TypeError):
        csconv.convert(root, tmp_path / "o", create_panoptic=False)  # a misspelt option is never ignored


def test_convert_keep_going_reports_skipped_frames(root, tmp_path):
    damaged = tmp_path / "root"
    shutil.copytree(root, damaged)
    bad = sorted((damaged / "leftImg8bit" / "val").glob("*/*.png"))[1]
    bad.write_bytes(bad.read_bytes()[:-30])
    summary = csconv.convert(damaged, tmp_path / "o", splits="val", keep_going=True, workers=1)
    assert [(s.split, s.index, s.path) for s in summary.skipped] == [("val", 1, str(bad))]
    assert summary.records == SPLITS["val"] - 1


# --- samples() --------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_samples_are_what_the_tfrecords_hold_read_by_tensorflow(root, outputs, workers):
    pytest.importorskip("tensorflow")
    for split in SPLITS:
        records = [r for k in range(10) for r in read_tfrecord(outputs["tfrecord"] / f"{split}-{k:05d}-of-00010.tfrecord")]
        produced = list(csconv.samples(root, split, workers=workers))
        assert len(produced) == len(records) == SPLITS[split]
        for sample, record in zip(produced, records):
            assert sample.filename == record["image/filename"].decode()
            assert sample.image == record["image/encoded"]
            assert (sample.height, sample.width, sample.channels) == (
                record["image/height"], record["image/width"], record["image/channels"])
            if split == "test":
                assert sample.label is None and record["image/segmentation/class/encoded"] == b""
            else:
                assert bytes(sample.label_bytes()) == record["image/segmentation/class/encoded"]


def test_semantic_samples_and_their_decoded_views(root, tmp_path):
    csconv.convert(root, tmp_path / "semantic", create_panoptic_data=False, splits="val", workers=1)
    stored = list(csconv.read(tmp_path / "semantic", "val"))
    produced = list(csconv.samples(root, "val", task="semantic", workers=2))
    assert produced == stored
    label = produced[0].label_array()
    assert label.dtype == np.uint8 and label.shape == (48, 96)
    np.testing.assert_array_equal(label, np.asarray(Image.open(io.BytesIO(produced[0].label))))
    with pytest.raises(ValueError, match="semantic label"):
        produced[0].semantic_and_instance()


def test_decoded_views_of_a_panoptic_sample(root):
    sample = next(s for s in csconv.samples(root, "train") if s.filename.startswith("aachen"))
    image = sample.image_array()
    assert image.shape == (48, 96, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, np.asarray(Image.open(io.BytesIO(sample.image)).convert("RGB")))
    label = sample.label_array()
    assert label.dtype == np.int32 and label.shape == (48, 96)
    semantic, instance = sample.semantic_and_instance()
    assert semantic.dtype == np.uint8 and instance.dtype == np.int32
    np.testing.assert_array_equal(semantic.astype(np.int32) * 1000 + instance, label)
    assert IGNORE_LABEL in semantic and instance.max() > 0
    with pytest.raises(ValueError, match="another label divisor"):
        sample.semantic_and_instance(label_divisor=10)  # 255000 // 10 is no class


def test_samples_stop_early_and_errors_come_in_order(root, tmp_path):
    damaged = tmp_path / "root"
    shutil.copytree(root, damaged)
    frames = sorted((damaged / "leftImg8bit" / "train").glob("*/*.png"), key=str)
    frames[4].write_bytes(frames[4].read_bytes()[:-30])
    produced = []
    with pytest.raises(csconv.CsconvError, match="truncated PNG") as raised:
        for sample in csconv.samples(damaged, "train", workers=2, lookahead=3):
            produced.append(sample.filename)
    assert str(frames[4]) in str(raised.value)
    assert len(produced) == 4  # the frames before the bad one, in order
    first = next(iter(csconv.samples(damaged, "train", workers=2)))  # abandoned generator: workers shut down
    assert first.filename == produced[0]
    with pytest.raises(csconv.CsconvError, match="no split|split folder missing"):
        csconv.samples(damaged, "nosuchsplit")  # checked at the call, before any iteration


@pytest.mark.parametrize("folder", ["tmpfs folder", "none"])
def test_worker_samples_come_through_files_or_the_pipe_alike(root, tmp_path, monkeypatch, folder):
    """Workers hand their samples over in files of a folder of the caller's (/dev/shm on
    Linux), or through the process pool's pipe where there is none: the same samples,
    and no file left behind, whether the caller takes every frame, stops early or meets
    a bad frame."""
    from csconv.pipeline import sample_workers

    handover = tmp_path / "shm"
    handover.mkdir()
    monkeypatch.setattr(sample_workers, "SHARED_MEMORY_FOLDER", str(handover) if folder != "none" else
                        str(tmp_path / "no such folder"))
    for task in ("panoptic", "semantic"):
        expected = list(csconv.samples(root, "train", task=task))
        assert list(csconv.samples(root, "train", task=task, workers=2)) == expected
    stopped = csconv.samples(root, "train", workers=2, lookahead=4)
    assert next(stopped).filename == expected[0].filename
    stopped.close()
    damaged = tmp_path / "root"
    shutil.copytree(root, damaged)
    frame = sorted((damaged / "leftImg8bit" / "train").glob("*/*.png"), key=str)[2]
    frame.write_bytes(frame.read_bytes()[:-30])
    with pytest.raises(csconv.CsconvError, match="truncated PNG"):
        list(csconv.samples(damaged, "train", workers=2))
    assert list(handover.iterdir()) == []


def test_stats_of_samples_equal_csconv_stats(root, outputs):
    from csconv.inspection.stats import compute_stats, frame_instances

    (expected,) = compute_stats(str(outputs["tfrecord"]), ["train"])
    pixels = np.zeros(256, dtype=np.int64)
    instances = np.zeros(256, dtype=np.int64)
    for sample in csconv.samples(root, "train", workers=2):
        semantic, instance = sample.semantic_and_instance()
        pixels += np.bincount(semantic.reshape(-1), minlength=256)
        instances += frame_instances(semantic, instance)
    np.testing.assert_array_equal(pixels, expected.pixels)
    np.testing.assert_array_equal(instances, expected.instances)
    assert pixels.sum() == SPLITS["train"] * 48 * 96


# --- read() -----------------------------------------------------------------------------


@pytest.mark.parametrize("sink", [sink_param(name) for name in SINK_NAMES])
def test_read_indexes_every_sinks_output(outputs, sink):
    for split in SPLITS:
        expected = reference(outputs, split)
        dataset = csconv.read(outputs[sink], split)
        assert len(dataset) == len(expected) == SPLITS[split]
        assert dataset[0] == expected[0] and dataset[-1] == expected[-1]
        assert dataset[np.int64(1)] == expected[1]
        for index in reversed(range(len(expected))):  # backwards: no reader may assume order
            assert dataset[index] == expected[index], (sink, split, index)
        with pytest.raises(IndexError):
            dataset[len(expected)]
        with pytest.raises(IndexError):
            dataset[-len(expected) - 1]
        assert list(dataset[1:-1]) == expected[1:-1]
        assert list(dataset[::-2]) == expected[::-2]
        assert list(dataset[3:][::2][1:]) == expected[3:][::2][1:]
        assert len(dataset[5:2]) == 0
        assert list(pickle.loads(pickle.dumps(dataset[2:5]))) == expected[2:5]
    assert csconv.read(outputs[sink], "train").label_divisor == 1000


def test_read_of_deeplab2s_own_folder_without_manifest(outputs, tmp_path):
    folder = tmp_path / "deeplab2"
    folder.mkdir()
    for path in outputs["tfrecord"].glob("*.tfrecord"):
        shutil.copy(path, folder)
    dataset = csconv.read(folder, "train")
    assert list(dataset) == reference(outputs, "train")
    with pytest.raises(csconv.CsconvError, match="no split 'nope'"):
        csconv.read(folder, "nope")


def test_a_sink_without_random_access_is_read_into_memory(outputs):
    class OnlyReads(Sink):  # what a third-party sink may offer: read_shard alone
        name = "only-reads"

        def read_shard(self, path):
            return TFRecordSink().read_shard(path)

    path = str(outputs["tfrecord"] / "train-00000-of-00010.tfrecord")
    shard = OnlyReads().open_random_access(path)
    assert isinstance(shard, MaterialisedShard)
    assert [shard.get(i) for i in range(len(shard))] == list(TFRecordSink().read_shard(path))


def test_grain_reads_csconv_read_as_a_random_access_source(outputs):
    grain = pytest.importorskip("grain")
    for sink in outputs:
        dataset = (
            grain.MapDataset.source(csconv.read(outputs[sink], "train"))
            .shuffle(seed=1)
            .map(lambda sample: {"image": sample.image_array(), "label": sample.label_array(),
                                 "name": sample.filename})
            .batch(5)
        )
        batches = list(dataset)
        assert [len(b["name"]) for b in batches] == [5, 5, 3]
        by_name = {s.filename: s for s in reference(outputs, "train")}
        names = [n for b in batches for n in b["name"]]
        assert sorted(names) == sorted(by_name) and names != list(by_name)
        for batch in batches:
            for name, label in zip(batch["name"], batch["label"]):
                np.testing.assert_array_equal(label, by_name[name].label)


def _to_arrays(sample):
    return sample.filename, sample.image_array(), sample.label_array()


def test_pytorch_dataloader_with_two_workers(outputs):
    torch = pytest.importorskip(
        "torch", reason="torch comes with the test extra on Linux x86-64, Python 3.11 only: pip install torch")
    dataset = csconv.read(outputs["tfrecord"], "train")
    # Spawned workers get the dataset pickled (paths and counts) and open their own files.
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=2, shuffle=True, collate_fn=_to_arrays,
        multiprocessing_context="spawn", generator=torch.Generator().manual_seed(0),
    )
    seen = {name: (image, label) for name, image, label in loader}
    expected = reference(outputs, "train")
    assert sorted(seen) == sorted(s.filename for s in expected)
    for sample in expected:
        image, label = seen[sample.filename]
        np.testing.assert_array_equal(label, sample.label)
        np.testing.assert_array_equal(image, sample.image_array())


def test_pytorch_dataloader_forked_after_the_parent_read(outputs):
    pytest.importorskip("torch", reason="torch comes with the test extra on Linux x86-64, Python 3.11 only")
    # In a fresh process: forking a pytest process that imported TensorFlow is unsafe.
    # The parent reads first, so each forked worker must open files of its own.
    script = textwrap.dedent(f"""
        import torch, csconv
        dataset = csconv.read({str(outputs["tfrecord"])!r}, "train")
        first = dataset[0]
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=list,
                                             multiprocessing_context="fork")
        samples = [s for batch in loader for s in batch]
        assert samples == list(dataset) and samples[0] == first, "differs"
        print(len(samples))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(SPLITS["train"])]


def test_public_names():
    assert set(csconv.__all__) >= {"convert", "samples", "read", "CsconvError", "SplitSizeWarning", "Sample", "__version__"}
    for name in csconv.__all__:
        assert getattr(csconv, name) is not None
    from csconv.api import convert

    assert csconv.convert is convert
