"""The DeepLab2 reference format: `<split>-0000k-of-0000N.tfrecord`, one tf.train.Example per frame."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from ..core.records import Sample
from ..hookspecs import hookimpl
from . import tfrecord_format
from .base import RandomAccessShard, ShardWriter, Sink, read_at, split_of_shard, unreadable_record

# DeepLab2's feature keys (deeplab2/common.py).
KEY_IMAGE = "image/encoded"
KEY_FILENAME = "image/filename"
KEY_FORMAT = "image/format"
KEY_HEIGHT = "image/height"
KEY_WIDTH = "image/width"
KEY_CHANNELS = "image/channels"
KEY_LABEL = "image/segmentation/class/encoded"
KEY_LABEL_FORMAT = "image/segmentation/class/format"


IMAGE_KEYS = (KEY_IMAGE, KEY_FILENAME, KEY_FORMAT, KEY_HEIGHT, KEY_WIDTH, KEY_CHANNELS)
LABEL_KEYS = (KEY_LABEL, KEY_LABEL_FORMAT)


def example_features(sample: Sample) -> dict[str, tfrecord_format.FeatureValue]:
    """The features of the record DeepLab2 stores for a sample: exactly these, no others."""
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
    return features


def example_parts(sample: Sample) -> list[tfrecord_format.Buffer]:
    return tfrecord_format.encode_example(example_features(sample))


def sample_from_example(data: bytes, split: str) -> Sample:
    features = tfrecord_format.decode_example(data)
    # A record is DeepLab2's only if it holds exactly its keys: an extra or missing one
    # is a defect verify must see, not something to read past.
    unexpected = sorted(set(features) - set(IMAGE_KEYS) - set(LABEL_KEYS))
    if unexpected:
        raise ValueError(f"unexpected feature(s) {', '.join(map(repr, unexpected))}")
    if (KEY_LABEL in features) != (KEY_LABEL_FORMAT in features):
        raise ValueError(f"{KEY_LABEL!r} and {KEY_LABEL_FORMAT!r} must come together")

    def one(key: str, kind: type):
        values = features.get(key)
        if values is None or len(values) != 1:
            raise ValueError(f"feature {key!r} missing or not a single value")
        if not isinstance(values[0], kind):
            raise ValueError(f"feature {key!r} holds a {type(values[0]).__name__}, expected {kind.__name__}")
        return values[0]

    height, width = one(KEY_HEIGHT, int), one(KEY_WIDTH, int)
    label, label_format = None, None
    if KEY_LABEL in features:
        label, label_format = one(KEY_LABEL, bytes), one(KEY_LABEL_FORMAT, bytes).decode()
        if label_format == "raw":
            if len(label) != height * width * 4:
                raise ValueError(f"raw label holds {len(label)} bytes, expected {height}x{width}x4")
            label = np.frombuffer(label, dtype="<i4").reshape(height, width)
    return Sample(
        split=split,
        filename=one(KEY_FILENAME, bytes).decode(),
        image=one(KEY_IMAGE, bytes),
        image_format=one(KEY_FORMAT, bytes).decode(),
        height=height,
        width=width,
        channels=one(KEY_CHANNELS, int),
        label=label,
        label_format=label_format,
    )


def parse_record(path: str, index: int, data: tfrecord_format.Buffer, split: str) -> Sample:
    """sample_from_example, a record that is not DeepLab2's Example being an InputError naming the shard."""
    try:
        return sample_from_example(data, split)
    except ValueError as error:  # the parser's refusals (UnicodeDecodeError is one)
        raise unreadable_record(path, index, str(error)) from None


def framing_error(path: str, error: tfrecord_format.RecordError):
    return unreadable_record(path, error.index, f"{error.problem} at byte {error.offset}")


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


class TFRecordShard(RandomAccessShard):
    """Random access by the records' offsets, found once by hopping from header to header."""

    def __init__(self, path: str):
        self.path, self.split = path, split_of_shard(path)
        self.file = open(path, "rb")
        try:
            self.index = tfrecord_format.index_records(self.file)
        except tfrecord_format.RecordError as error:
            self.file.close()
            raise framing_error(path, error) from None
        except BaseException:
            self.file.close()
            raise

    def __len__(self) -> int:
        return len(self.index)

    def get(self, index: int) -> Sample:
        offset, length = self.index[index]
        framed = read_at(self.file, offset + 12, length + 4)
        try:
            data = tfrecord_format.check_record(framed, index, offset)
        except tfrecord_format.RecordError as error:
            raise framing_error(self.path, error) from None
        return parse_record(self.path, index, data, self.split)

    def close(self) -> None:
        self.file.close()


class ExampleShardsSink(Sink):
    """A sink whose records are DeepLab2's serialized tf.train.Examples (TFRecord,
    ArrayRecord): samples are parsed from serialized_examples(), which verify also
    compares feature by feature."""

    def serialized_examples(self, path: str) -> Iterator[bytes]:
        raise NotImplementedError

    def read_shard(self, path: str) -> Iterator[Sample]:
        split = split_of_shard(path)
        for index, record in enumerate(self.serialized_examples(path)):
            yield parse_record(path, index, record, split)


class TFRecordSink(ExampleShardsSink):
    name = "tfrecord"
    description = "DeepLab2's sharded TFRecords of tf.train.Example (the reference)"

    def shard_name(self, split: str, index: int, num_shards: int) -> str:
        return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"

    def open_writer(self, stream: BinaryIO) -> ShardWriter:
        return TFRecordWriter(stream)

    def serialized_examples(self, path: str) -> Iterator[bytes]:
        """The serialized tf.train.Examples of a shard, in order (verify compares their features)."""
        with open(path, "rb") as f:
            try:
                yield from tfrecord_format.iter_records(f)
            except tfrecord_format.RecordError as error:
                raise framing_error(path, error) from None

    def open_random_access(self, path: str) -> RandomAccessShard:
        return TFRecordShard(path)


@hookimpl
def register_sinks(register):
    register(TFRecordSink)
