"""WebDataset tar shards, `<split>-0000k.tar`, written with the `webdataset` package's TarWriter.

One sample per frame, keyed by the frame's file stem (`aachen_000000_000019`):

- `png`: the image bytes, as in the TFRecord;
- `panoptic.npy`: the int32 HxW panoptic map (panoptic task), or
  `semantic.png`: the label PNG bytes, as in the TFRecord (semantic task); neither on test;
- `json`: filename, height, width, channels, image_format, label_format.

Shards are reproducible: every tar member gets a fixed mtime, mode, uid/gid and
owner names, so the same samples give byte-identical tars.
"""

from __future__ import annotations

import io
import json
import math
import os
import tokenize
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from ..core.errors import InputError
from ..core.records import Sample
from ..hookspecs import hookimpl
from .base import RandomAccessShard, ShardWriter, Sink, read_at, split_of_shard, unreadable_record

PANOPTIC_KEY = "panoptic.npy"
SEMANTIC_KEY = "semantic.png"
IMAGE_KEY = "png"
META_KEY = "json"

# Fixed tar member attributes (uid and gid are tarfile's default, 0).
MTIME = 0
MODE = 0o444
OWNER = ""


def npy_bytes(label: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(label, dtype="<i4"), version=(1, 0), allow_pickle=False)
    return buffer.getvalue()


def key_problem(filename: str) -> str | None:
    if "." in filename:
        # webdataset splits member names at the first dot of the base name, so the
        # sample would fall apart into several when read back.
        return f"frame name {filename!r} holds a '.', which a WebDataset key cannot (use another sink)"
    return None


def tar_sample(sample: Sample) -> dict:
    """The webdataset sample dict of one frame, every value already encoded to bytes."""
    meta = {
        "filename": sample.filename,
        "height": sample.height,
        "width": sample.width,
        "channels": sample.channels,
        "image_format": sample.image_format,
        "label_format": sample.label_format,
    }
    entry = {
        "__key__": sample.filename,
        IMAGE_KEY: sample.image,
        META_KEY: json.dumps(meta, sort_keys=True).encode(),
    }
    if sample.label is not None:
        if sample.label_format == "raw":
            entry[PANOPTIC_KEY] = npy_bytes(sample.label)
        elif sample.label_format == "png":
            entry[SEMANTIC_KEY] = sample.label_bytes()
        else:
            raise ValueError(f"{sample.filename}: label format {sample.label_format!r} has no WebDataset field")
    return entry


class WebDatasetWriter(ShardWriter):
    def __init__(self, stream: BinaryIO):
        import webdataset  # on first use: a missing package must not break the other sinks

        # encoder=False: values are bytes already, written unchanged.
        self.writer = webdataset.TarWriter(
            stream, user=OWNER, group=OWNER, mode=MODE, mtime=MTIME, encoder=False, compress=False
        )

    def write(self, sample: Sample) -> None:
        problem = key_problem(sample.filename)
        if problem:  # csconv asks refuses() first; this guards other users of the writer
            raise ValueError(problem)
        self.writer.write(tar_sample(sample))

    def close(self) -> None:
        self.writer.close()  # end-of-archive blocks; the stream itself is left to the caller


# The members a csconv sample holds; a shard's other members are not read. webdataset's
# default decoders would unpickle a `.pyd`/`.pkl` member (code execution from a shard),
# torch.load a `.pth` and inflate a `.gz` one: a shard is input like any other.
SHARD_MEMBERS = frozenset({IMAGE_KEY, META_KEY, PANOPTIC_KEY, SEMANTIC_KEY})


def load_npy(data: bytes) -> np.ndarray:
    """The array of an .npy member, whose header must account for exactly the bytes after it.

    numpy's own reader allocates the shape a header claims before reading: a 200-byte
    member could ask for gigabytes. Object arrays (pickles) are refused.
    """
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"npy format version {version[0]}.{version[1]}, not 1.0 or 2.0")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    try:
        shape, fortran_order, dtype = read_header(stream)
    except (SyntaxError, tokenize.TokenError) as error:
        # numpy retries a header that is no Python literal through the tokenizer (for
        # headers Python 2 wrote), whose errors are not ValueErrors.
        raise ValueError(f"npy header is not a Python literal ({error.__class__.__name__}: {error})") from None
    if dtype.hasobject:
        raise ValueError("npy member holds Python objects")
    count = math.prod(shape)
    body = memoryview(data)[stream.tell():]
    if len(body) != count * dtype.itemsize:
        raise ValueError(f"npy member holds {len(body)} bytes of data, its header claims {shape} {dtype}")
    array = np.frombuffer(body, dtype=dtype, count=count)
    return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)


def decode_members(item: dict) -> dict:
    """A grouped sample's members decoded as webdataset's decoder would decode csconv's own
    (json and npy; png stays the exact stored bytes), and nothing else."""
    decoded = dict(item)
    if META_KEY in item:
        decoded[META_KEY] = json.loads(item[META_KEY])
    if PANOPTIC_KEY in item:
        decoded[PANOPTIC_KEY] = load_npy(item[PANOPTIC_KEY])
    return decoded


def _checked_meta(meta, key: str) -> dict:
    if not isinstance(meta, dict):
        raise ValueError(f"{key}: json member is not an object")
    for name, kinds in (("filename", str), ("image_format", str), ("height", int), ("width", int),
                        ("channels", int), ("label_format", (str, type(None)))):
        if name not in meta:
            raise ValueError(f"{key}: json member has no {name!r}")
        value = meta[name]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise ValueError(f"{key}: json member's {name!r} is {value!r}")
    return meta


def sample_from_wds(item: dict, split: str) -> Sample:
    """A Sample from a webdataset sample decoded with `.decode()` (npy -> array, json -> dict, png left as bytes)."""
    key = item.get("__key__")
    missing = [suffix for suffix in (IMAGE_KEY, META_KEY) if suffix not in item]
    if missing:
        raise ValueError(f"{key}: no {' or '.join(missing)} member")
    meta = _checked_meta(item[META_KEY], key)
    height, width = meta["height"], meta["width"]
    label = None
    if PANOPTIC_KEY in item:
        label = np.asarray(item[PANOPTIC_KEY])
        if label.dtype != np.dtype("<i4") or label.shape != (height, width):
            raise ValueError(f"{key}: panoptic label is {label.dtype} {label.shape}, expected int32 {height}x{width}")
    elif SEMANTIC_KEY in item:
        label = bytes(item[SEMANTIC_KEY])
    return Sample(
        split=split,
        filename=meta["filename"],
        image=bytes(item[IMAGE_KEY]),
        image_format=meta["image_format"],
        height=height,
        width=width,
        channels=meta["channels"],
        label=label,
        label_format=meta["label_format"],
    )


def parse_sample(path: str, index: int, item: dict, split: str) -> Sample:
    try:
        return sample_from_wds(decode_members(item), split)
    except ValueError as error:  # bad JSON or npy (UnicodeDecodeError too), missing or mistyped fields
        raise unreadable_record(path, index, str(error)) from None


class _ClampedReads:
    """A file whose reads never ask for more than is left in it: tarfile reads a GNU long
    name or a pax header by the size its header claims, and a read allocates that first."""

    def __init__(self, file, size: int):
        self.file, self.size = file, size

    def read(self, count: int = -1) -> bytes:
        if count is None or count < 0:
            return self.file.read()
        return self.file.read(max(0, min(count, self.size - self.file.tell())))

    def seek(self, *args) -> int:
        return self.file.seek(*args)

    def tell(self) -> int:
        return self.file.tell()


def tar_members(path: str, file) -> list[tuple[str, str, int, int]]:
    """(name, suffix, data offset, size) of each member of an uncompressed tar file that a
    csconv sample holds, in file order; other members are skipped unread.

    Uncompressed and seekable only: csconv writes plain tars, a compressed one could
    inflate without bound (webdataset's own expander opens any compression), and a stream
    skips a member by reading it, so a header claiming 2^60 bytes would never end.
    """
    import tarfile

    from webdataset import tariterators

    size = os.fstat(file.fileno()).st_size
    members = []
    try:
        with tarfile.open(fileobj=_ClampedReads(file, size), mode="r:") as tar:
            for member in tar:
                # Before tarfile seeks past this member to the next header: a size claimed
                # in base-256 may be negative or beyond any file.
                if not 0 <= member.size <= size - member.offset_data:
                    raise InputError(path, f"tar member {member.name!r} claims {member.size:,} bytes, "
                                           "past the end of the file")
                _, suffix = tariterators.base_plus_ext(member.name)
                if not member.isreg() or suffix is None or suffix.lower() not in SHARD_MEMBERS:
                    continue
                members.append((member.name, suffix.lower(), member.offset_data, member.size))
    except (tarfile.TarError, ValueError, OverflowError) as error:  # a damaged header; an offset past any file
        raise InputError(path, f"not a readable tar file ({error})") from None
    return members


class TarShard(RandomAccessShard):
    """Random access by the tar members' data offsets, listed once from their headers and
    grouped into samples by key as webdataset groups them."""

    def __init__(self, path: str):
        from webdataset import tariterators

        self.path, self.split = path, split_of_shard(path)
        self.file = open(path, "rb")
        try:
            members = tar_members(path, self.file)
        except BaseException:
            self.file.close()
            raise
        self.members: list[tuple[str, list[tuple[str, int, int]]]] = []  # key -> (suffix, offset, size)
        for name, suffix, offset, size in members:
            key, _ = tariterators.base_plus_ext(name)
            if not self.members or self.members[-1][0] != key:
                self.members.append((key, []))
            self.members[-1][1].append((suffix, offset, size))

    def __len__(self) -> int:
        return len(self.members)

    def get(self, index: int) -> Sample:
        key, parts = self.members[index]
        item = {"__key__": key, "__url__": self.path}
        for suffix, offset, size in parts:
            item[suffix] = read_at(self.file, offset, size)
        return parse_sample(self.path, index, item, self.split)

    def close(self) -> None:
        self.file.close()


class WebDatasetSink(Sink):
    name = "webdataset"
    description = "WebDataset tar shards (png image, panoptic.npy or semantic.png label, json metadata)"
    requires = (("webdataset", "webdataset"),)

    def shard_name(self, split: str, index: int, num_shards: int) -> str:
        return f"{split}-{index:05d}.tar"

    def refuses(self, sample: Sample) -> str | None:
        return key_problem(sample.filename)

    def open_writer(self, stream: BinaryIO) -> ShardWriter:
        return WebDatasetWriter(stream)

    def read_shard(self, path: str) -> Iterator[Sample]:
        from webdataset import tariterators

        split = split_of_shard(path)
        with open(path, "rb") as file:
            files = (
                {"fname": name, "data": read_at(file, offset, size), "__url__": path}
                for name, _, offset, size in tar_members(path, file)
            )
            # webdataset's grouping of members into samples, as WebDataset(path) groups them.
            index = 0
            try:
                for item in tariterators.group_by_keys(files):
                    yield parse_sample(path, index, item, split)
                    index += 1
            except ValueError as error:  # a member name twice in one sample
                raise unreadable_record(path, index, str(error)) from None

    def open_random_access(self, path: str) -> RandomAccessShard:
        return TarShard(path)


@hookimpl
def register_sinks(register):
    register(WebDatasetSink)
