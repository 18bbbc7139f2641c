"""Every sink's reader refuses a damaged or foreign shard with InputError naming the shard
(one line on the command line), never another exception, whichever way csconv reads it:
verify's read_shard, csconv.read()'s open_random_access, --against's serialized Examples.

The fuzz harnesses (fuzz/fuzz_{tfrecord,parquet,webdataset,arrayrecord}.py) hold the
readers to the same rule on random inputs; these are the cases worth naming.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from conftest import subprocess_env
from PIL import Image

from csconv.core.errors import InputError
from csconv.core.records import Sample
from csconv.pipeline.shards import open_shard
from csconv.sinks import tfrecord_format
from csconv.sinks.arrayrecord import ArrayRecordSink
from csconv.sinks.parquet import ParquetSink
from csconv.sinks.tfrecord import TFRecordSink
from csconv.sinks.webdataset import WebDatasetSink

SINKS = {"tfrecord": TFRecordSink, "parquet": ParquetSink, "webdataset": WebDatasetSink, "arrayrecord": ArrayRecordSink}
AVAILABLE = [name for name, sink in SINKS.items() if sink.missing_requirement() is None]


def png_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="png")
    return out.getvalue()


def samples() -> list[Sample]:
    image = png_bytes(np.full((4, 6, 3), 90, dtype=np.uint8))
    label = np.full((4, 6), 13_001, dtype="<i4")
    return [
        Sample(split="train", filename=f"aachen_{i:06d}_000019", image=image, image_format="png", height=4, width=6,
               channels=3, label=label, label_format="raw")
        for i in range(3)
    ]


def write(sink, folder) -> str:
    shard, writer = open_shard(sink, str(folder), sink.shard_name("train", 0, 1))
    for sample in samples():
        writer.write(sample)
    writer.close()
    shard.commit()
    return shard.final_path


def read_every_way(sink, path: str) -> None:
    """What verify, csconv.read() and verify --against do with one shard."""
    for _ in sink.read_shard(path):
        pass
    shard = sink.open_random_access(path)
    try:
        for index in range(len(shard)):
            shard.get(index)
    finally:
        shard.close()
    examples = getattr(sink, "serialized_examples", None)
    if examples is not None:
        for _ in examples(path):
            pass


def damaged(data: bytes):
    """Damage every sink must refuse or read through."""
    yield "empty", b""
    yield "garbage", b"csconv" * 50
    yield "truncated", data[: len(data) // 2]
    yield "cut by one byte", data[:-1]
    for position in (0, 30, len(data) // 3, len(data) // 2, len(data) - 30):
        flipped = bytearray(data)
        flipped[position] ^= 0x55
        yield f"byte {position} flipped", bytes(flipped)


@pytest.mark.parametrize("sink_name", AVAILABLE)
def test_damaged_shards_are_input_errors_naming_the_shard(tmp_path, sink_name):
    sink = SINKS[sink_name]()
    path = write(sink, tmp_path)
    read_every_way(sink, path)  # the undamaged shard reads
    data = open(path, "rb").read()
    for what, bad in damaged(data):
        with open(path, "wb") as f:
            f.write(bad)
        try:
            read_every_way(sink, path)
        except InputError as error:
            assert error.path == path, what
            assert "\n" not in str(error), what


# --- TFRecord ----------------------------------------------------------------------------

def framed(data: bytes) -> bytes:
    return b"".join(bytes(part) for part in tfrecord_format.frame([data]))


def test_tfrecord_length_beyond_the_file_is_refused_unread(tmp_path):
    """A header (its CRC right) claiming 2^40 bytes: read() would allocate that much first."""
    path = tmp_path / "train-00000-of-00001.tfrecord"
    length = struct.pack("<Q", 1 << 40)
    path.write_bytes(length + struct.pack("<I", tfrecord_format.masked_crc32c(length)) + b"x" * 100)
    for read in (lambda: list(TFRecordSink().read_shard(str(path))), lambda: TFRecordSink().open_random_access(str(path))):
        with pytest.raises(InputError, match=r"record 0: unreadable \(truncated record"):
            read()


def test_tfrecord_example_without_a_key_names_shard_and_record(tmp_path):
    """fuzz_tfrecord's first finding: every parser refusal was a ValueError traceback
    (here a feature map entry without its key) outside verify."""
    entry = b"\x12\x00"  # only field 2 (the value), empty
    example = b"\x0a" + bytes([len(entry) + 2]) + b"\x0a" + bytes([len(entry)]) + entry
    path = tmp_path / "train-00000-of-00001.tfrecord"
    path.write_bytes(framed(example))
    with pytest.raises(InputError) as caught:
        list(TFRecordSink().read_shard(str(path)))
    assert str(caught.value) == f"{path}: record 0: unreadable (feature map entry without a key)"
    with pytest.raises(InputError, match="record 0: unreadable"):
        TFRecordSink().open_random_access(str(path)).get(0)


def test_a_varint_where_bytes_belong_is_not_a_length(tmp_path):
    """A map entry's key given as a varint of 10^12: bytes(10**12) would allocate a terabyte."""
    key = b"\x08" + bytes(_varint(10**12))  # field 1, wire type 0
    example = b"\x0a" + bytes([len(key) + 2]) + b"\x0a" + bytes([len(key)]) + key
    with pytest.raises(ValueError, match="wire type 0 where a length-delimited value belongs"):
        tfrecord_format.decode_example(example)
    with pytest.raises(ValueError, match="truncated field"):
        tfrecord_format.decode_example(b"\x0d\x01")  # a fixed32 field cut short


def _varint(value: int) -> bytearray:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return out


# --- WebDataset --------------------------------------------------------------------------

def tar_of(members: dict[str, bytes], mode: str = "w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


META = json.dumps({"filename": "a_1_2", "height": 4, "width": 6, "channels": 3, "image_format": "png",
                   "label_format": "raw"}).encode()


class Unpickled:
    """Unpickling this creates its file: the proof a shard's member was unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.skipif("webdataset" not in AVAILABLE, reason="webdataset not installed")
def test_webdataset_members_of_other_kinds_are_never_decoded(tmp_path):
    """webdataset's default decoders unpickle `.pyd`/`.pkl`/`.pickle` members (and
    torch.load `.pth`, inflate `.gz`): reading a shard must not run what it holds."""
    import pickle

    marker = tmp_path / "unpickled"
    payload = pickle.dumps(Unpickled(str(marker)))
    image = png_bytes(np.zeros((4, 6, 3), dtype=np.uint8))
    members = {"a_1_2.png": image, "a_1_2.json": META, "a_1_2.panoptic.npy": npy(np.zeros((4, 6), "<i4"))}
    for suffix in ("pyd", "pkl", "pickle"):
        members[f"a_1_2.{suffix}"] = payload
    path = tmp_path / "train-00000.tar"
    path.write_bytes(tar_of(members))
    read_every_way(WebDatasetSink(), str(path))
    (sample,) = WebDatasetSink().read_shard(str(path))
    assert sample.filename == "a_1_2" and sample.label.shape == (4, 6)
    assert not marker.exists()


def npy_claiming(shape: tuple, body: bytes) -> bytes:
    """An .npy file (format 1.0) whose header claims `shape` of int32, followed by `body`."""
    header = f"{{'descr': '<i4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


@pytest.mark.skipif("webdataset" not in AVAILABLE, reason="webdataset not installed")
def test_webdataset_npy_header_claiming_gigabytes_is_refused(tmp_path):
    """numpy's reader allocates the shape an .npy header claims before reading the data:
    a 200-byte member would ask for 40 GB."""
    assert np.load(io.BytesIO(npy_claiming((4, 6), bytes(96)))).shape == (4, 6)  # the helper writes real npy
    members = {"a_1_2.png": b"png", "a_1_2.json": META, "a_1_2.panoptic.npy": npy_claiming((100000, 100000), bytes(96))}
    path = tmp_path / "train-00000.tar"
    path.write_bytes(tar_of(members))
    for read in (lambda: list(WebDatasetSink().read_shard(str(path))),
                 lambda: WebDatasetSink().open_random_access(str(path)).get(0)):
        with pytest.raises(InputError, match=r"record 0: unreadable \(npy member holds 96 bytes of data, its header claims"):
            read()


@pytest.mark.skipif("webdataset" not in AVAILABLE, reason="webdataset not installed")
def test_compressed_tar_is_refused(tmp_path):
    """csconv writes plain tars; a compressed one could inflate without bound."""
    path = tmp_path / "train-00000.tar"
    path.write_bytes(tar_of({"a_1_2.png": b"png", "a_1_2.json": META}, mode="w:gz"))
    for read in (lambda: list(WebDatasetSink().read_shard(str(path))), lambda: WebDatasetSink().open_random_access(str(path))):
        with pytest.raises(InputError, match="not a readable tar file"):
            read()


@pytest.mark.skipif("webdataset" not in AVAILABLE, reason="webdataset not installed")
@pytest.mark.parametrize("meta, problem", [
    (b"[1, 2]", "json member is not an object"),
    (META.replace(b'"height": 4', b'"height": "4"'), "json member's 'height' is '4'"),
    (META.replace(b'"channels": 3', b'"channels": true'), "json member's 'channels' is True"),
    (META.replace(b'"image_format": "png", ', b""), "json member has no 'image_format'"),
    (b"\xff", "codec can't decode"),
])
def test_webdataset_metadata_of_the_wrong_shape(tmp_path, meta, problem):
    path = tmp_path / "train-00000.tar"
    path.write_bytes(tar_of({"a_1_2.png": b"png", "a_1_2.json": meta}))
    with pytest.raises(InputError, match=r"record 0: unreadable \(.*" + problem.replace("(", r"\(")):
        list(WebDatasetSink().read_shard(str(path)))


# --- the command line ----------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:the input holds no")
def test_stats_on_a_damaged_shard_is_one_line(tmp_path):
    """A damaged shard met outside verify (here by `csconv stats`) ends with the one-line
    error naming it, exit 2, not a traceback."""
    import csconv

    from csconv.synthetic import generate_dataset

    generate_dataset(tmp_path / "cityscapes", {"train": 2}, width=16, height=8, seed=3)
    out = tmp_path / "out"
    csconv.convert(tmp_path / "cityscapes", out, num_shards=1, workers=1)
    shard = out / "train-00000-of-00001.tfrecord"
    data = bytearray(shard.read_bytes())
    data[40] ^= 0x55
    shard.write_bytes(bytes(data))
    done = subprocess.run([sys.executable, "-m", "csconv", "stats", str(out)], capture_output=True, text=True,
                          env=subprocess_env())
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith(f"csconv: error: {shard}: record 0: unreadable (data CRC mismatch at byte 0)"), done.stderr
