"""Every built-in sink holds the TFRecord reference's samples, each read by its own ecosystem.

TFRecord through tf.data + parse_single_example, Parquet through pyarrow and Hugging
Face datasets, WebDataset through webdataset.WebDataset, ArrayRecord through
array_record's reader + parse_single_example: the same frames in the same
shards, field by field, on a set with every SPEC edge (non-RGB images, crowds, a
crowded frame, an empty one, a split of 13 frames, one smaller than 10 shards).
"""

import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import parse_examples, read_tfrecord
from csconv.pipeline.convert import convert
from csconv.plugins import sinks
from csconv.core.records import ConvertOptions, Task

SINK_SUFFIX = {
    "tfrecord": "-of-00010.tfrecord", "parquet": "-of-00010.parquet", "webdataset": ".tar",
    "arrayrecord": "-of-00010.array_record",
}
# Optional packages missing here (array_record has no Windows wheel): those sinks are left out.
AVAILABLE = [name for name in SINK_SUFFIX if sinks()[name].sink_class.missing_requirement() is None]
SPLITS = {"train": 13, "val": 3, "test": 2}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from csconv.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("cityscapes")
    generate_dataset(root, SPLITS, width=96, height=48, image_modes={3: "L", 4: "P", 5: "RGBA"})
    return root


@pytest.fixture(scope="module", params=[Task.PANOPTIC, Task.SEMANTIC], ids=lambda t: t.value)
def outputs(request, root, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param.value)
    for sink in AVAILABLE:
        convert(str(root), str(folder / sink), sink_name=sink, options=ConvertOptions(task=request.param),
                workers=2, show_progress=False)
    return folder


def shard(folder, sink, split, index):
    return folder / sink / f"{split}-{index:05d}{SINK_SUFFIX[sink]}"


def normalise(filename, image, fmt, height, width, channels, label, label_format):
    """One comparable tuple; labels as int32 arrays (raw) or decoded pixels (png)."""
    if label_format == "raw":
        label = np.frombuffer(label, "<i4").reshape(height, width) if isinstance(label, bytes) else label
        label = ("raw", label.dtype.str, label.tobytes())
    elif label_format == "png":
        label = ("png", np.asarray(Image.open(io.BytesIO(label))).tobytes())
    else:
        label = None
    return (filename, bytes(image), fmt, int(height), int(width), int(channels), label)


def tfrecord_samples(path):
    return [
        normalise(r["image/filename"].decode(), r["image/encoded"], r["image/format"].decode(), r["image/height"],
                  r["image/width"], r["image/channels"], r["image/segmentation/class/encoded"],
                  r["image/segmentation/class/format"].decode() or None)
        for r in read_tfrecord(path)
    ]


def parquet_samples(path):
    import pyarrow.parquet as pq

    rows = pq.read_table(str(path)).to_pylist()
    return [
        normalise(r["filename"], r["image"]["bytes"], r["image_format"], r["height"], r["width"], r["channels"],
                  r["label"], r["label_format"])
        for r in rows
    ]


def webdataset_samples(path):
    import webdataset as wds

    samples = []
    # empty_check=False: an empty shard (a split smaller than 10 frames) is valid.
    for item in wds.WebDataset(str(path), shardshuffle=False, empty_check=False).decode():
        meta = item["json"]
        label = item.get("panoptic.npy", item.get("semantic.png"))
        if isinstance(label, np.ndarray) and meta["label_format"] == "png":
            pytest.fail("semantic.png must stay PNG bytes")
        samples.append(normalise(meta["filename"], item["png"], meta["image_format"], meta["height"], meta["width"],
                                 meta["channels"], label, meta["label_format"]))
    return samples


def arrayrecord_samples(path):
    """Read by array_record's own reader, each record parsed by TensorFlow as DeepLab2 parses a TFRecord's."""
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(str(path))
    assert reader.writer_options_string().startswith("group_size:1,")  # what TFDS writes and Kauldron requires
    records = parse_examples(reader.read_all())
    reader.close()
    return [
        normalise(r["image/filename"].decode(), r["image/encoded"], r["image/format"].decode(), r["image/height"],
                  r["image/width"], r["image/channels"], r["image/segmentation/class/encoded"],
                  r["image/segmentation/class/format"].decode() or None)
        for r in records
    ]


READERS = {"parquet": parquet_samples, "webdataset": webdataset_samples, "arrayrecord": arrayrecord_samples}


@pytest.mark.parametrize("split", list(SPLITS))
def test_every_sink_holds_the_reference_samples_shard_by_shard(outputs, split):
    total = 0
    for index in range(10):
        reference = tfrecord_samples(shard(outputs, "tfrecord", split, index))
        for sink in AVAILABLE[1:]:
            assert READERS[sink](shard(outputs, sink, split, index)) == reference, f"{sink} {split} {index}"
        total += len(reference)
    assert total == SPLITS[split]
    assert AVAILABLE[0] == "tfrecord" and len(AVAILABLE) > 1


def test_hugging_face_datasets_reads_the_same_frames(outputs):
    datasets = pytest.importorskip("datasets")

    files = [str(shard(outputs, "parquet", "train", i)) for i in range(10)]
    loaded = datasets.load_dataset("parquet", data_files={"train": files}, split="train")
    reference = [s for i in range(10) for s in tfrecord_samples(shard(outputs, "tfrecord", "train", i))]
    assert len(loaded) == len(reference)
    for row, expected in zip(loaded, reference):
        assert row["filename"] == expected[0]
        decoded = np.asarray(Image.open(io.BytesIO(expected[1])).convert("RGB"))
        assert np.array_equal(np.asarray(row["image"].convert("RGB")), decoded)
        assert normalise(row["filename"], expected[1], row["image_format"], row["height"], row["width"],
                         row["channels"], row["label"], row["label_format"]) == expected


def test_manifests_agree_on_shard_record_counts(outputs):
    counts = {}
    for sink in AVAILABLE:
        manifest = json.loads((outputs / sink / "csconv-manifest.json").read_text())
        counts[sink] = {split: [s["records"] for s in info["shards"]] for split, info in manifest["splits"].items()}
    for sink in AVAILABLE:
        assert counts[sink] == counts["tfrecord"], sink
