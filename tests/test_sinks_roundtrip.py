"""Every sink gives back what it was given, and each format reads in its own ecosystem's reader."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
import tempfile

import numpy as np
from conftest import deeplab2_feature_spec, sink_param
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from csconv import plugins
from csconv.core.records import ConvertOptions, Sample, Task
from csconv.pipeline.shards import open_shard
from csconv.sinks.arrayrecord import ArrayRecordSink
from csconv.sinks.parquet import ParquetSink
from csconv.sinks.tfrecord import TFRecordSink
from csconv.sinks.webdataset import WebDatasetSink

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SINKS = {"tfrecord": TFRecordSink, "parquet": ParquetSink, "webdataset": WebDatasetSink, "arrayrecord": ArrayRecordSink}
AVAILABLE = {name: sink for name, sink in SINKS.items() if sink.missing_requirement() is None}


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_shard(sink, directory: str, split: str, samples, index: int = 0, num_shards: int = 1) -> str:
    shard, writer = open_shard(sink, directory, sink.shard_name(split, index, num_shards))
    for sample in samples:
        writer.write(sample)
    writer.close()
    shard.commit()
    return shard.final_path


# -- random samples ----------------------------------------------------------------------

INT32 = st.integers(-(2**31), 2**31 - 1)
STEM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=24)


@st.composite
def samples_of_split(draw, split: str, index: int) -> Sample:
    height = draw(st.integers(1, 12))
    width = draw(st.integers(1, 12))
    label, label_format = None, None
    if split != "test":
        if draw(st.booleans()):
            # Mostly extreme and negative values, and some flat regions.
            elements = st.one_of(INT32, st.sampled_from([0, -1, 255_000, 2**31 - 1, -(2**31)]))
            label = draw(hnp.arrays(np.dtype("<i4"), (height, width), elements=elements))
            label_format = "raw"
        else:
            ids = draw(hnp.arrays(np.uint8, (height, width)))
            label, label_format = png_bytes(ids), "png"
    return Sample(
        split=split,
        # Unique within a shard, as Cityscapes stems are.
        filename=f"{draw(STEM)}_{index:06d}",
        image=draw(st.binary(max_size=64)),
        image_format=draw(st.sampled_from(["png", "jpeg"])),
        height=height,
        width=width,
        channels=draw(st.sampled_from([3, 1, 4])),
        label=label,
        label_format=label_format,
    )


@st.composite
def shards(draw):
    split = draw(st.sampled_from(["train", "val", "test"]))
    count = draw(st.integers(0, 19))  # crosses the Parquet row-group size (8) twice
    return split, [draw(samples_of_split(split, i)) for i in range(count)]


@pytest.mark.parametrize("sink_name", [sink_param(name) for name in sorted(SINKS)])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(shard=shards())
def test_round_trip(sink_name, shard):
    split, samples = shard
    sink = SINKS[sink_name]()
    with tempfile.TemporaryDirectory() as directory:
        path = write_shard(sink, directory, split, samples)
        assert os.listdir(directory) == [os.path.basename(path)]  # committed, nothing left behind
        back = list(sink.read_shard(path))
    assert back == samples
    for sample in back:
        if sample.label_format == "raw":
            assert sample.label.dtype == np.dtype("<i4")


def test_sample_equality_sees_label_differences():
    # The round trips above rely on Sample.__eq__ comparing arrays.
    a = Sample("train", "x", b"i", "png", 1, 2, 3, np.array([[1, 2]], dtype="<i4"), "raw")
    b = Sample("train", "x", b"i", "png", 1, 2, 3, np.array([[1, 3]], dtype="<i4"), "raw")
    c = Sample("train", "x", b"i", "png", 1, 2, 3, np.array([1, 2], dtype="<i4"), "raw")
    int64 = Sample("train", "x", b"i", "png", 1, 2, 3, np.array([[1, 2]], dtype=np.int64), "raw")
    assert a != b and a != c and a != int64  # a reader handing back int64 is a defect
    assert a == Sample("train", "x", b"i", "png", 1, 2, 3, np.array([[1, 2]], dtype="<i4"), "raw")


def test_sinks_are_registered():
    available = plugins.sinks()
    for name, sink_class in SINKS.items():
        assert available[name].sink_class is sink_class
        assert available[name].origin == "built-in"


def test_shard_names():
    assert TFRecordSink().shard_name("train", 3, 10) == "train-00003-of-00010.tfrecord"
    assert ParquetSink().shard_name("train", 3, 10) == "train-00003-of-00010.parquet"
    assert WebDatasetSink().shard_name("train", 3, 10) == "train-00003.tar"
    assert ArrayRecordSink().shard_name("train", 3, 10) == "train-00003-of-00010.array_record"


# -- fixed, realistic samples for the ecosystems' own readers ------------------------------


def realistic_samples() -> dict[str, list[Sample]]:
    rng = np.random.default_rng(7)
    out: dict[str, list[Sample]] = {"panoptic": [], "semantic": [], "test": []}
    for i, (height, width) in enumerate([(5, 7), (1, 1), (16, 9)] * 4):  # 12 frames: two row groups
        image = png_bytes(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        stem = f"city{i % 3}_{i:06d}_000019"
        common = dict(filename=stem, image=image, image_format="png", height=height, width=width, channels=3)
        panoptic = rng.choice(np.array([255_000, 7_000, 11_001, 11_002, 13_999], dtype="<i4"), (height, width))
        out["panoptic"].append(Sample(split="train", label=panoptic, label_format="raw", **common))
        trainids = rng.choice(np.array([0, 5, 18, 255], dtype=np.uint8), (height, width))
        out["semantic"].append(Sample(split="val", label=png_bytes(trainids), label_format="png", **common))
        out["test"].append(Sample(split="test", label=None, label_format=None, **common))
    return out


@pytest.fixture(scope="module")
def realistic():
    return realistic_samples()


def decoded_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_tfrecord_reads_in_tensorflow(realistic, tmp_path):
    tf = pytest.importorskip("tensorflow")
    sink = TFRecordSink()
    for task, samples in realistic.items():
        path = write_shard(sink, str(tmp_path), samples[0].split, samples)
        spec = deeplab2_feature_spec(tf)
        parsed = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(path)]
        assert len(parsed) == len(samples)
        for example, sample in zip(parsed, samples):
            assert example["image/encoded"].numpy() == sample.image
            assert example["image/filename"].numpy().decode() == sample.filename
            assert example["image/format"].numpy() == b"png"
            assert (example["image/height"].numpy(), example["image/width"].numpy()) == (sample.height, sample.width)
            assert example["image/channels"].numpy() == 3
            label = example["image/segmentation/class/encoded"]
            label_format = example["image/segmentation/class/format"].numpy().decode()
            if task == "panoptic":
                assert label_format == "raw"
                decoded = tf.reshape(tf.io.decode_raw(label, tf.int32), (sample.height, sample.width))
                np.testing.assert_array_equal(decoded.numpy(), sample.label)
            elif task == "semantic":
                assert label_format == "png"
                assert label.numpy() == sample.label
                decoded = tf.io.decode_png(label, channels=1)[..., 0].numpy()
                np.testing.assert_array_equal(decoded, decoded_png(sample.label))
            else:
                assert label.numpy() == b"" and label_format == ""
        # The label is absent from test records, not stored empty.
        if task == "test":
            raw = next(iter(tf.data.TFRecordDataset(path))).numpy()
            assert b"image/segmentation/class/encoded" not in tf.train.Example.FromString(raw).features.feature


def test_parquet_reads_in_pyarrow(realistic, tmp_path):
    import pyarrow.parquet as pq

    sink = ParquetSink()
    for task, samples in realistic.items():
        path = write_shard(sink, str(tmp_path), samples[0].split, samples)
        parquet_file = pq.ParquetFile(path)
        # Row groups of 8 for streaming readers, the rest in the last one.
        assert [parquet_file.metadata.row_group(g).num_rows for g in range(parquet_file.num_row_groups)] == [8, 4]
        meta = parquet_file.metadata.row_group(0)
        chunks = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
        assert chunks["image.bytes"].compression == "UNCOMPRESSED"
        assert chunks["label"].compression == "ZSTD"
        for binary in ("image.bytes", "label"):
            assert not any("DICTIONARY" in e for e in chunks[binary].encodings), chunks[binary].encodings
        features = json.loads(parquet_file.schema_arrow.metadata[b"huggingface"])["info"]["features"]
        assert features["image"] == {"_type": "Image"}
        assert features["label"] == {"dtype": "binary", "_type": "Value"}

        table = pq.read_table(path)
        assert table.column_names == [
            "image", "filename", "image_format", "height", "width", "channels", "label", "label_format",
        ]
        rows = table.to_pylist()
        for row, sample in zip(rows, samples, strict=True):
            assert row["image"] == {"bytes": sample.image, "path": f"{sample.filename}_leftImg8bit.png"}
            assert row["filename"] == sample.filename and row["image_format"] == "png"
            assert (row["height"], row["width"], row["channels"]) == (sample.height, sample.width, 3)
            if task == "panoptic":
                assert row["label_format"] == "raw"
                assert row["label"] == sample.label.astype("<i4").tobytes()
            elif task == "semantic":
                assert row["label_format"] == "png" and row["label"] == sample.label
            else:
                assert row["label"] is None and row["label_format"] is None


def test_empty_parquet_shard_has_the_schema(tmp_path):
    import pyarrow.parquet as pq

    from csconv.sinks.parquet import schema

    path = write_shard(ParquetSink(), str(tmp_path), "train", [])
    table = pq.read_table(path)
    assert table.num_rows == 0
    assert table.schema.remove_metadata() == schema().remove_metadata()
    assert b"huggingface" in table.schema.metadata


def test_parquet_loads_in_hugging_face_datasets(realistic, tmp_path):
    datasets = pytest.importorskip("datasets")
    sink = ParquetSink()
    for task, samples in realistic.items():
        directory = tmp_path / task
        directory.mkdir()
        path = write_shard(sink, str(directory), samples[0].split, samples)
        dataset = datasets.load_dataset(
            "parquet", data_files=path, split="train", cache_dir=str(tmp_path / "hf-cache")
        )
        assert dataset.features["image"] == datasets.Image()
        assert len(dataset) == len(samples)
        for row, sample in zip(dataset, samples):
            image = row["image"]
            assert image.size == (sample.width, sample.height) and image.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(image), decoded_png(sample.image))
            assert row["filename"] == sample.filename
            assert (row["height"], row["width"], row["channels"]) == (sample.height, sample.width, 3)
            if task == "panoptic":
                label = np.frombuffer(row["label"], dtype="<i4").reshape(row["height"], row["width"])
                np.testing.assert_array_equal(label, sample.label)
            else:
                assert row["label"] == sample.label_bytes()


@pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning")  # WebDataset's opener leaves shards open
def test_webdataset_reads_in_webdataset(realistic, tmp_path):
    import webdataset

    sink = WebDatasetSink()
    for task, samples in realistic.items():
        path = write_shard(sink, str(tmp_path), samples[0].split, samples)
        items = list(webdataset.WebDataset(path, shardshuffle=False).decode())
        assert [item["__key__"] for item in items] == [s.filename for s in samples]
        for item, sample in zip(items, samples):
            assert item["png"] == sample.image
            assert item["json"] == {
                "filename": sample.filename,
                "height": sample.height,
                "width": sample.width,
                "channels": 3,
                "image_format": "png",
                "label_format": sample.label_format,
            }
            keys = set(item) - {"__key__", "__url__", "__local_path__", "png", "json"}
            if task == "panoptic":
                assert keys == {"panoptic.npy"}
                assert item["panoptic.npy"].dtype == np.int32
                np.testing.assert_array_equal(item["panoptic.npy"], sample.label)
            elif task == "semantic":
                assert keys == {"semantic.png"} and item["semantic.png"] == sample.label
            else:
                assert keys == set()
        # With an image decoder, the image decodes to the same pixels.
        decoded = list(webdataset.WebDataset(path, shardshuffle=False).decode("rgb8"))
        for item, sample in zip(decoded, samples, strict=True):
            np.testing.assert_array_equal(item["png"], decoded_png(sample.image))


def test_empty_webdataset_shard_is_an_empty_tar(tmp_path):
    path = write_shard(WebDatasetSink(), str(tmp_path), "test", [])
    with tarfile.open(path) as tar:
        assert tar.getmembers() == []
    assert list(WebDatasetSink().read_shard(path)) == []


def test_tar_is_reproducible(realistic, tmp_path, monkeypatch):
    import time

    sink = WebDatasetSink()
    # Every member kind in one shard: panoptic, semantic and unlabelled frames.
    samples = [
        dataclasses.replace(sample, filename=f"{sample.filename}_{task}")
        for task in ("panoptic", "semantic", "test")
        for sample in realistic[task]
    ]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_shard(sink, str(tmp_path / "a"), "train", samples)
    monkeypatch.setattr(time, "time", lambda: 1_900_000_000.0)  # another wall clock
    second = write_shard(sink, str(tmp_path / "b"), "train", samples)
    with open(first, "rb") as a, open(second, "rb") as b:
        assert a.read() == b.read()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:3]] == [
        "city0_000000_000019_panoptic.json",
        "city0_000000_000019_panoptic.panoptic.npy",
        "city0_000000_000019_panoptic.png",
    ]
    for member in members:
        assert member.isfile()
        assert (member.mtime, member.mode, member.uid, member.gid, member.uname, member.gname) == (
            0, 0o444, 0, 0, "", "",
        )


# -- the whole pipeline: every sink stores the TFRecords' samples in the same shards -------


@pytest.mark.filterwarnings("ignore::csconv.SplitSizeWarning")
@pytest.mark.parametrize("task", [Task.PANOPTIC, Task.SEMANTIC])
def test_converted_sinks_agree_with_tfrecord(task, tmp_path):
    from csconv.pipeline.convert import convert
    from csconv.synthetic import generate_dataset

    root = tmp_path / "cityscapes"
    generate_dataset(root, {"train": 5, "test": 2}, width=64, height=32)
    options = ConvertOptions(task=task)
    read = {}
    for name, sink_class in AVAILABLE.items():
        out = tmp_path / name
        convert(str(root), str(out), sink_name=name, splits=["train", "test"], options=options,
                num_shards=3, show_progress=False)
        sink = sink_class()
        read[name] = {
            (split, index): list(sink.read_shard(str(out / sink.shard_name(split, index, 3))))
            for split in ("train", "test")
            for index in range(3)
        }
    assert [len(read["tfrecord"][("train", k)]) for k in range(3)] == [2, 2, 1]
    assert [len(read["tfrecord"][("test", k)]) for k in range(3)] == [1, 1, 0]
    for name in AVAILABLE:
        assert read[name] == read["tfrecord"], name
    assert len(read) > 1
