"""The ArrayRecord sink: DeepLab2's Examples in ArrayRecord shards, read by array_record's
own readers, by Grain, and parsed by TensorFlow as DeepLab2 parses them; and the shard
guarantees (a complete file under the final name, checksums of the bytes on disk)
for a format whose library writes the file itself."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from conftest import deeplab2_feature_spec
from csconv.pipeline.convert import convert
from csconv.pipeline.manifest import MANIFEST_NAME
from csconv.storage.local import AdoptedShardFile, OutputError, file_digests
from csconv.pipeline.shards import open_shard
from csconv.sinks.arrayrecord import ArrayRecordSink
from test_sinks_roundtrip import realistic_samples

pytest.importorskip("array_record", reason="pip install 'csconv[arrayrecord]'")
from array_record.python import array_record_data_source  # noqa: E402
from array_record.python.array_record_module import ArrayRecordReader  # noqa: E402

SPLITS = {"train": 13, "val": 3, "test": 2}


def write(directory, samples, name="train-00000-of-00001.array_record") -> str:
    shard, writer = open_shard(ArrayRecordSink(), str(directory), name)
    for sample in samples:
        writer.write(sample)
    writer.close()
    shard.commit()
    return shard.final_path


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from csconv.synthetic import generate_dataset

    base = tmp_path_factory.mktemp("arrayrecord")
    root = base / "cityscapes"
    generate_dataset(root, SPLITS, width=96, height=48, image_modes={3: "L", 4: "P"})
    for sink in ("tfrecord", "arrayrecord"):
        convert(str(root), str(base / sink), sink_name=sink, workers=2, show_progress=False)
    return base


def test_records_are_the_tfrecord_sinks_examples_and_tensorflow_parses_them(tmp_path):
    tf = pytest.importorskip("tensorflow")
    for task, samples in realistic_samples().items():
        directory = tmp_path / task
        directory.mkdir()
        path = write(directory, samples)
        reader = ArrayRecordReader(path)
        assert reader.num_records() == len(samples)
        assert reader.writer_options_string().startswith("group_size:1,")
        records = reader.read_all()
        reader.close()
        spec = deeplab2_feature_spec(tf)
        for record, sample in zip(records, samples, strict=True):
            example = tf.io.parse_single_example(record, spec)
            assert example["image/encoded"].numpy() == sample.image
            assert example["image/filename"].numpy().decode() == sample.filename
            assert (int(example["image/height"]), int(example["image/width"])) == (sample.height, sample.width)
            label = example["image/segmentation/class/encoded"]
            if task == "panoptic":
                decoded = tf.reshape(tf.io.decode_raw(label, tf.int32), (sample.height, sample.width)).numpy()
                np.testing.assert_array_equal(decoded, sample.label)
            elif task == "semantic":
                assert label.numpy() == sample.label
            else:
                assert set(tf.train.Example.FromString(record).features.feature) == {
                    "image/encoded", "image/filename", "image/format", "image/height", "image/width",
                    "image/channels",
                }


def test_shards_equal_the_tfrecords_shard_by_shard(converted):
    from csconv.sinks.tfrecord import TFRecordSink

    tfrecord, arrayrecord = TFRecordSink(), ArrayRecordSink()
    for split, size in SPLITS.items():
        total = 0
        for index in range(10):
            expected = list(tfrecord.serialized_examples(str(converted / "tfrecord" / tfrecord.shard_name(split, index, 10))))
            path = converted / "arrayrecord" / arrayrecord.shard_name(split, index, 10)
            reader = ArrayRecordReader(str(path))
            # The very bytes csconv's TFRecords frame: one encoder for both formats.
            assert (reader.read_all() if reader.num_records() else []) == expected
            reader.close()
            total += len(expected)
        assert total == size


def test_manifest_size_and_checksums_are_the_files_on_disk(converted):
    manifest = json.loads((converted / "arrayrecord" / MANIFEST_NAME).read_text())
    assert manifest["sink"] == "arrayrecord"
    for info in manifest["splits"].values():
        for shard in info["shards"]:
            path = converted / "arrayrecord" / shard["name"]
            assert path.stat().st_size == shard["bytes"]
            assert file_digests(str(path), ["crc32c"]) == {"crc32c": shard["crc32c"]}
    assert not [n for n in os.listdir(converted / "arrayrecord") if n.startswith(".")]


def test_array_record_data_source_reads_a_split_by_index(converted):
    tf = pytest.importorskip("tensorflow")
    paths = [str(converted / "arrayrecord" / f"train-{k:05d}-of-00010.array_record") for k in range(10)]
    source = array_record_data_source.ArrayRecordDataSource(paths)
    assert len(source) == SPLITS["train"]
    reference = [sample for path in paths for sample in ArrayRecordSink().read_shard(path)]
    spec = deeplab2_feature_spec(tf)
    for index in (12, 0, 7):
        parsed = tf.io.parse_single_example(source[index], spec)
        assert parsed["image/filename"].numpy().decode() == reference[index].filename


def test_grain_pipeline_shuffles_decodes_and_batches(converted):
    grain = pytest.importorskip("grain")
    tf = pytest.importorskip("tensorflow")
    paths = [str(converted / "arrayrecord" / f"train-{k:05d}-of-00010.array_record") for k in range(10)]
    spec = deeplab2_feature_spec(tf)

    def decode(record: bytes) -> dict:
        # DeepLab2's parser: the Example by its keys, the PNG image, the raw int32 panoptic label.
        example = tf.io.parse_single_example(record, spec)
        height, width = int(example["image/height"]), int(example["image/width"])
        image = tf.io.decode_png(example["image/encoded"], channels=3).numpy()
        label = tf.reshape(tf.io.decode_raw(example["image/segmentation/class/encoded"], tf.int32), (height, width))
        return {"image": image, "label": label.numpy(), "filename": example["image/filename"].numpy()}

    dataset = (
        grain.MapDataset.source(grain.sources.ArrayRecordDataSource(paths))
        .shuffle(seed=3)
        .map(decode)
        .batch(4, drop_remainder=False)
    )
    batches = list(dataset)
    assert [len(batch["filename"]) for batch in batches] == [4, 4, 4, 1]
    assert batches[0]["image"].shape == (4, 48, 96, 3) and batches[0]["label"].dtype == np.int32
    reference = {s.filename: s for p in paths for s in ArrayRecordSink().read_shard(p)}
    order = [name.decode() for batch in batches for name in batch["filename"]]
    assert sorted(order) == sorted(reference) and order != list(reference)  # every frame once, shuffled
    for batch in batches:
        for name, image, label in zip(batch["filename"], batch["image"], batch["label"]):
            sample = reference[name.decode()]
            np.testing.assert_array_equal(image, sample.image_array())
            np.testing.assert_array_equal(label, sample.label)


# --- a file the library writes: csconv's shard guarantees ---------------------------------


def test_a_failed_write_leaves_nothing_and_names_the_shard(tmp_path):
    samples = realistic_samples()["panoptic"]
    shard, writer = open_shard(ArrayRecordSink(), str(tmp_path), "train-00000-of-00001.array_record")
    assert isinstance(shard, AdoptedShardFile)
    assert os.listdir(tmp_path) == [".train-00000-of-00001.array_record.partial"]
    writer.write(samples[0])
    os.unlink(shard.temp_path)
    os.mkdir(shard.temp_path)  # the library can no longer finish its file
    with pytest.raises(OutputError) as raised:
        writer.close()
        shard.commit()
    assert str(raised.value).startswith(f"{shard.final_path}: ")
    os.rmdir(shard.temp_path)
    shard.abort()
    assert os.listdir(tmp_path) == []


def test_an_aborted_shard_is_removed_and_never_final(tmp_path):
    shard, writer = open_shard(ArrayRecordSink(), str(tmp_path), "val-00000-of-00001.array_record")
    writer.write(realistic_samples()["semantic"][0])
    shard.abort()
    assert os.listdir(tmp_path) == []


def test_sha256_of_an_adopted_file_is_its_bytes(tmp_path):
    import hashlib

    shard, writer = open_shard(ArrayRecordSink(), str(tmp_path), "test-00000-of-00001.array_record", sha256=True)
    for sample in realistic_samples()["test"]:
        writer.write(sample)
    writer.close()
    shard.commit()
    data = open(shard.final_path, "rb").read()
    assert shard.size == len(data)
    assert shard.digests["sha256"] == hashlib.sha256(data).hexdigest()
    assert shard.digests == file_digests(shard.final_path, ["crc32c", "sha256"])


def test_an_unwritable_folder_is_one_line_before_the_library_runs(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OutputError, match="cannot create the temporary file"):
        open_shard(ArrayRecordSink(), str(tmp_path / "file"), "train-00000-of-00001.array_record")


def _limit_file_size():
    # An ArrayRecord file is at least 128 KiB (riegeli blocks of 64 KiB): no shard fits.
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


def test_output_disk_full_is_one_line_and_leaves_no_partial_shard(converted, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "csconv", "--cityscapes_root", str(converted / "cityscapes"), "--output_dir", str(out),
         "--sink", "arrayrecord", "--workers", "2", "--quiet"],
        capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=120,
    )
    errors = [line for line in done.stderr.splitlines() if not line.startswith("csconv: warning:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert errors[0].startswith(f"csconv: error: {out}/") and "output disk full or file size limit reached" in errors[0]
    names = os.listdir(out)
    assert not [n for n in names if n.endswith(".partial")] and MANIFEST_NAME not in names, names
    for name in names:
        if name.endswith(".array_record"):
            list(ArrayRecordSink().read_shard(str(out / name)))  # every final-named shard is whole


def test_preview_and_stats_read_arrayrecord_output_as_they_read_tfrecords(converted, tmp_path):
    from csconv.inspection.preview import preview
    from csconv.inspection.stats import compute_stats, format_table

    assert format_table(compute_stats(str(converted / "arrayrecord"))) == format_table(
        compute_stats(str(converted / "tfrecord")))
    for sink in ("tfrecord", "arrayrecord"):
        preview(str(converted / sink), "train", 11, str(tmp_path / f"{sink}.png"))
    assert (tmp_path / "arrayrecord.png").read_bytes() == (tmp_path / "tfrecord.png").read_bytes()
