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
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from ..core.records import Sample
from ..hookspecs import hookimpl
from .base import RandomAccessShard, ShardWriter, Sink, read_at, split_of_shard

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


def sample_from_wds(item: dict, split: str) -> Sample:
    """A Sample from a webdataset sample decoded with `.decode()` (npy -> array, json -> dict, png left as bytes)."""
    meta = item[META_KEY]
    height, width = meta["height"], meta["width"]
    label = None
    if PANOPTIC_KEY in item:
        label = np.asarray(item[PANOPTIC_KEY])
        if label.dtype != np.dtype("<i4") or label.shape != (height, width):
            raise ValueError(f"{item['__key__']}: panoptic label is {label.dtype} {label.shape}, expected int32 {height}x{width}")
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


class TarShard(RandomAccessShard):
    """Random access by the tar members' data offsets, listed once from their headers and
    grouped into samples by key as webdataset groups them."""

    def __init__(self, path: str):
        import tarfile

        from webdataset import autodecode, tariterators

        self.path, self.split = path, split_of_shard(path)
        self.decode = autodecode.Decoder([])  # as read_shard: png stays bytes, npy and json decode
        self.members: list[tuple[str, list[tuple[str, int, int]]]] = []  # key -> (suffix, offset, size)
        with tarfile.open(path) as tar:
            for member in tar:
                key, suffix = tariterators.base_plus_ext(member.name)
                if not member.isfile() or key is None:
                    continue
                if not self.members or self.members[-1][0] != key:
                    self.members.append((key, []))
                self.members[-1][1].append((suffix.lower(), member.offset_data, member.size))
        self.file = open(path, "rb")

    def __len__(self) -> int:
        return len(self.members)

    def get(self, index: int) -> Sample:
        key, parts = self.members[index]
        item = {"__key__": key, "__url__": self.path}
        for suffix, offset, size in parts:
            item[suffix] = read_at(self.file, offset, size)
        return sample_from_wds(self.decode(item), self.split)

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
        from webdataset import autodecode, tariterators

        split = split_of_shard(path)
        # webdataset's own tar expansion, grouping and decoding, as WebDataset(path).decode()
        # runs them, but over a file closed here (WebDataset's opener leaves it open).
        # No image handler: png members stay the exact stored bytes; npy and json decode.
        decode = autodecode.Decoder([])
        with open(path, "rb") as stream:
            members = tariterators.tar_file_expander([{"url": path, "stream": stream}])
            for item in tariterators.group_by_keys(members):
                yield sample_from_wds(decode(item), split)

    def open_random_access(self, path: str) -> RandomAccessShard:
        return TarShard(path)


@hookimpl
def register_sinks(register):
    register(WebDatasetSink)
