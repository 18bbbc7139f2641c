"""TFRecord framing and Example encoding, checked against known vectors and TensorFlow itself."""

import io
import os

import numpy as np
import pytest

from csconv.sinks import tfrecord_format as fmt

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def test_crc32c_known_vectors():
    # RFC 3720 B.4 check value, and the masking of it TFRecord applies.
    assert fmt.masked_crc32c(b"123456789") == (((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert fmt.masked_crc32c([b"1234", memoryview(b"56789")]) == fmt.masked_crc32c(b"123456789")
    assert fmt.masked_crc32c(b"") == 0xA282EAD8


def test_frame_layout():
    framed = b"".join(fmt.frame([b"ab", b"c"]))
    assert framed[:8] == (3).to_bytes(8, "little")
    assert framed[12:15] == b"abc"
    assert len(framed) == 3 + 16
    assert list(fmt.iter_records(io.BytesIO(framed))) == [b"abc"]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_records_are_reported_with_their_index(damage):
    data = bytearray(b"".join(fmt.frame([b"first"]) + fmt.frame([b"second record"])))
    if damage == "truncate":
        data = data[:-3]
    else:
        data[-6] ^= 0x01
    with pytest.raises(fmt.RecordError, match="record 1 at byte 21"):
        list(fmt.iter_records(io.BytesIO(bytes(data))))


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


FEATURES = {
    "image/encoded": b"\x89PNG fake bytes",
    "image/filename": "aachen_000000_000019",
    "image/height": 1024,
    "image/width": 2048,
    "big": [0, 1, -1, 2**40, -(2**63), 2**63 - 1],
    "label": memoryview(np.arange(12, dtype="<i4")).cast("B"),
}


def test_example_parses_in_tensorflow(tf):
    serialized = b"".join(fmt.encode_example(FEATURES))
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    assert feature["image/encoded"].bytes_list.value == [b"\x89PNG fake bytes"]
    assert feature["image/filename"].bytes_list.value == [b"aachen_000000_000019"]
    assert feature["image/height"].int64_list.value == [1024]
    assert list(feature["big"].int64_list.value) == FEATURES["big"]
    label = np.frombuffer(feature["label"].bytes_list.value[0], dtype="<i4")
    assert label.tolist() == list(range(12))


def test_tensorflow_examples_decode_here(tf):
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x", b"yz"])),
                "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[3, -7, 2**62])),
            }
        )
    )
    assert fmt.decode_example(example.SerializeToString()) == {"b": [b"x", b"yz"], "i": [3, -7, 2**62]}


def test_files_cross_between_tensorflow_and_csconv(tf, tmp_path):
    ours = tmp_path / "ours.tfrecord"
    payloads = [b"", b"a" * 1000, os.urandom(70000)]
    with open(ours, "wb") as f:
        for payload in payloads:
            f.writelines(fmt.frame([payload]))
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(ours))] == payloads

    theirs = tmp_path / "theirs.tfrecord"
    with tf.io.TFRecordWriter(str(theirs)) as writer:
        for payload in payloads:
            writer.write(payload)
    with open(theirs, "rb") as f:
        assert list(fmt.iter_records(f)) == payloads
    assert ours.read_bytes() == theirs.read_bytes()



def test_record_length_counts_bytes_not_array_elements():
    label = memoryview(np.arange(10, dtype=np.int32))
    header, _, _ = fmt.frame_around([b"ab", label])
    assert int.from_bytes(header[:8], "little") == 2 + 40
