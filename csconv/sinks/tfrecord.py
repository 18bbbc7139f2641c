"""The DeepLab2 reference format: `<split>-0000k-of-0000N.tfrecord`, one tf.train.Example per frame."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from ..core.records import Sample
from ..hookspecs import hookimpl
from . import tfrecord_format
from .base import ShardWriter, Sink, split_of_shard

# DeepLab2's feature keys (deeplab2/common.py).
KEY_IMAGE = "image/encoded"
KEY_FILENAME = "image/filename"
KEY_FORMAT = "image/format"
KEY_HEIGHT = "image/height"
KEY_WIDTH = "image/width"
KEY_CHANNELS = "image/channels"
KEY_LABEL = "image/segmentation/class/encoded"
KEY_LABEL_FORMAT = "image/segmentation/class/format"


def example_parts(sample: Sample) -> list[tfrecord_format.Buffer]:
    features: dict[str, tfrecord_format.FeatureValue] = {
        KEY_IMAGE: sample.image,
        KEY_FILENAME: sample.filename,
        KEY_FORMAT: sample.image_format,
        KEY_HEIGHT: sample.height,
        KEY_WIDTH: sample.width,
        KEY_CHANNELS: sample.channels,
    }
    if sample.label is not None:
        features[KEY_LABEL] = sample.label_bytes()
        features[KEY_LABEL_FORMAT] = sample.label_format
    return tfrecord_format.encode_example(features)


def sample_from_example(data: bytes, split: str) -> Sample:
    features = tfrecord_format.decode_example(data)

    def one(key: str):
        values = features.get(key)
        if values is None or len(values) != 1:
            raise ValueError(f"feature {key!r} missing or not a single value")
        return values[0]

    height, width = one(KEY_HEIGHT), one(KEY_WIDTH)
    label, label_format = None, None
    if KEY_LABEL in features:
        label, label_format = one(KEY_LABEL), one(KEY_LABEL_FORMAT).decode()
        if label_format == "raw":
            if len(label) != height * width * 4:
                raise ValueError(f"raw label holds {len(label)} bytes, expected {height}x{width}x4")
            label = np.frombuffer(label, dtype="<i4").reshape(height, width)
    return Sample(
        split=split,
        filename=one(KEY_FILENAME).decode(),
        image=one(KEY_IMAGE),
        image_format=one(KEY_FORMAT).decode(),
        height=height,
        width=width,
        channels=one(KEY_CHANNELS),
        label=label,
        label_format=label_format,
    )


class TFRecordWriter(ShardWriter):
    def __init__(self, stream: BinaryIO):
        self.stream = stream

    def write(self, sample: Sample) -> None:
        parts = example_parts(sample)
        header, data_crc, footer = tfrecord_format.frame_around(parts)
        # A csconv shard file keeps a CRC32C of everything written; handing it the CRC
        # computed for the record spares it a second pass over the data.
        write_checksummed = getattr(self.stream, "writelines_with_crc32c", None)
        if write_checksummed is None:
            self.stream.writelines([header, *parts, footer])
            return
        self.stream.write(header)
        write_checksummed(parts, data_crc)
        self.stream.write(footer)


class TFRecordSink(Sink):
    name = "tfrecord"
    description = "DeepLab2's sharded TFRecords of tf.train.Example (the reference)"

    def shard_name(self, split: str, index: int, num_shards: int) -> str:
        return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"

    def open_writer(self, stream: BinaryIO) -> ShardWriter:
        return TFRecordWriter(stream)

    def read_shard(self, path: str) -> Iterator[Sample]:
        split = split_of_shard(path)
        with open(path, "rb") as f:
            for record in tfrecord_format.iter_records(f):
                yield sample_from_example(record, split)


@hookimpl
def register_sinks(register):
    register(TFRecordSink)
