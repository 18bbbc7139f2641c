"""Parquet shards, `<split>-0000k-of-0000N.parquet`: one row per frame, readable by pyarrow and Hugging Face datasets.

The `image` column follows the Hugging Face `Image` feature layout (a struct of the
encoded bytes and the original file name), and the Hugging Face features are recorded
in the schema metadata, so `datasets.load_dataset("parquet", ...)` decodes it as a PIL
image. `label` holds exactly the bytes of the TFRecord label: little-endian int32 for
the panoptic task ('raw'), a PNG for the semantic task ('png'), null on test.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import BinaryIO

import numpy as np

from ..core.errors import InputError
from ..core.records import Sample
from ..hookspecs import hookimpl
from .base import RandomAccessShard, ShardWriter, Sink, split_of_shard, unreadable_record

IMAGE_SUFFIX = "_leftImg8bit.png"

# Rows per row group. A row group is the unit a streaming reader fetches and a writer
# buffers: 8 frames are about 8 PNG images plus 8 compressed labels.
ROW_GROUP_SIZE = 8

# zstd level of the `label` column, chosen by measuring 2048x1024 panoptic int32 labels
# (synthetic scenes, 23-38 segments; 8 MiB raw): level 1 stores about 23 KiB per frame
# and writes faster than an uncompressed label (less to copy); levels up to 9 stay at
# 19-27 KiB for up to twice the time, and 12-19 reach 13-14 KiB at 3-12x the time,
# a saving of under 0.5% of a frame whose ~2.6 MB PNG image is stored as is.
LABEL_ZSTD_LEVEL = 1

HF_FEATURES = {
    "image": {"_type": "Image"},
    "filename": {"dtype": "string", "_type": "Value"},
    "image_format": {"dtype": "string", "_type": "Value"},
    "height": {"dtype": "int64", "_type": "Value"},
    "width": {"dtype": "int64", "_type": "Value"},
    "channels": {"dtype": "int64", "_type": "Value"},
    "label": {"dtype": "binary", "_type": "Value"},
    "label_format": {"dtype": "string", "_type": "Value"},
}


@lru_cache(maxsize=1)
def schema():
    """The Arrow schema of every shard, Hugging Face features in its metadata.

    pyarrow is imported on first use: csconv loads every built-in sink at start-up,
    and a missing pyarrow must not break the other sinks.
    """
    import pyarrow as pa

    fields = [
        pa.field("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
        pa.field("filename", pa.string()),
        pa.field("image_format", pa.string()),
        pa.field("height", pa.int64()),
        pa.field("width", pa.int64()),
        pa.field("channels", pa.int64()),
        pa.field("label", pa.binary()),
        pa.field("label_format", pa.string()),
    ]
    return pa.schema(fields, metadata={b"huggingface": json.dumps({"info": {"features": HF_FEATURES}}).encode()})


# Per column (leaf path): PNG images are already compressed, labels get zstd.
COMPRESSION = {
    "image.bytes": "NONE",
    "image.path": "ZSTD",
    "filename": "ZSTD",
    "image_format": "ZSTD",
    "height": "ZSTD",
    "width": "ZSTD",
    "channels": "ZSTD",
    "label": "ZSTD",
    "label_format": "ZSTD",
}
# Dictionary encoding only where values repeat; never on the binary payloads.
DICTIONARY_COLUMNS = ["image_format", "label_format"]
# Min/max statistics are useful on the small columns only (not on megabyte payloads).
STATISTICS_COLUMNS = ["filename", "image_format", "height", "width", "channels", "label_format"]


def open_parquet_writer(stream: BinaryIO, label_level: int = LABEL_ZSTD_LEVEL):
    import pyarrow.parquet as pq

    return pq.ParquetWriter(
        stream,
        schema(),
        compression=COMPRESSION,
        compression_level={"label": label_level},
        use_dictionary=DICTIONARY_COLUMNS,
        write_statistics=STATISTICS_COLUMNS,
    )


class ParquetWriter(ShardWriter):
    def __init__(self, stream: BinaryIO, row_group_size: int = ROW_GROUP_SIZE, label_level: int = LABEL_ZSTD_LEVEL):
        self.row_group_size = row_group_size
        self.writer = open_parquet_writer(stream, label_level)
        self.pending: list[Sample] = []

    def write(self, sample: Sample) -> None:
        self.pending.append(sample)
        if len(self.pending) >= self.row_group_size:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        rows, self.pending = self.pending, []
        if not rows:
            return
        arrow_schema = schema()
        columns = [
            pa.StructArray.from_arrays(
                [
                    pa.array([s.image for s in rows], type=pa.binary()),
                    pa.array([s.filename + IMAGE_SUFFIX for s in rows], type=pa.string()),
                ],
                fields=list(arrow_schema.field("image").type),
            ),
            pa.array([s.filename for s in rows], type=pa.string()),
            pa.array([s.image_format for s in rows], type=pa.string()),
            pa.array([s.height for s in rows], type=pa.int64()),
            pa.array([s.width for s in rows], type=pa.int64()),
            pa.array([s.channels for s in rows], type=pa.int64()),
            pa.array([s.label_bytes() for s in rows], type=pa.binary()),
            pa.array([s.label_format for s in rows], type=pa.string()),
        ]
        self.writer.write_table(pa.Table.from_arrays(columns, schema=arrow_schema), row_group_size=len(rows))

    def close(self) -> None:
        self._flush()
        self.writer.close()  # writes the footer; an empty shard still gets the schema


# Columns a row cannot go without (label and label_format are null on the test split).
REQUIRED = ("filename", "image_format", "height", "width", "channels")


def open_shard(path: str):
    """A pyarrow ParquetFile of `path` holding csconv's columns, or an InputError naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet_file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as error:  # a damaged footer; column names not UTF-8
        raise InputError(path, f"not a readable Parquet file ({error})") from None
    try:
        problem = schema_problem(parquet_file.schema_arrow)
    except (pa.ArrowException, ValueError) as error:
        problem = f"not a readable Parquet file ({error})"
    if problem:
        parquet_file.close()
        raise InputError(path, problem)
    return parquet_file


def schema_problem(found) -> str | None:
    """What keeps a Parquet file's columns from being csconv's; other columns may be there too."""
    for field in schema():
        index = found.get_field_index(field.name)
        if index < 0:
            return f"not a csconv Parquet shard (no column {field.name!r})"
        if not found.field(index).type.equals(field.type):
            return f"not a csconv Parquet shard (column {field.name!r} is {found.field(index).type}, expected {field.type})"
    return None


def read_group(path: str, parquet_file, group: int, first_row: int):
    """One row group's table of csconv's columns; a damaged group is an InputError naming its first row."""
    import pyarrow as pa

    try:
        return parquet_file.read_row_group(group, columns=schema().names)
    except (pa.ArrowException, OSError) as error:
        raise unreadable_record(path, first_row, f"row group {group}: {error}") from None


def to_rows(path: str, table, first_row: int) -> list[dict]:
    import pyarrow as pa

    try:
        return table.to_pylist()
    except (pa.ArrowException, ValueError) as error:  # e.g. a string column holding invalid UTF-8
        raise unreadable_record(path, first_row, str(error)) from None


def parse_row(path: str, index: int, row: dict, split: str) -> Sample:
    try:
        return sample_from_row(row, split)
    except ValueError as error:
        raise unreadable_record(path, index, str(error)) from None


def sample_from_row(row: dict, split: str) -> Sample:
    missing = [name for name in REQUIRED if row[name] is None]
    if row["image"] is None or row["image"]["bytes"] is None:
        missing.insert(0, "image")
    if missing:
        raise ValueError(f"null {', '.join(missing)}")
    height, width = row["height"], row["width"]
    label, label_format = row["label"], row["label_format"]
    if label is not None and label_format == "raw":
        if len(label) != height * width * 4:
            raise ValueError(f"raw label holds {len(label)} bytes, expected {height}x{width}x4")
        label = np.frombuffer(label, dtype="<i4").reshape(height, width)
    return Sample(
        split=split,
        filename=row["filename"],
        image=row["image"]["bytes"],
        image_format=row["image_format"],
        height=height,
        width=width,
        channels=row["channels"],
        label=label,
        label_format=label_format,
    )


class ParquetShard(RandomAccessShard):
    """Random access by row group: the group holding a row is read whole (the smallest
    unit Parquet decodes), and kept for the rows after it."""

    def __init__(self, path: str):
        self.path, self.split = path, split_of_shard(path)
        self.file = open_shard(path)
        self.starts = [0]
        for group in range(self.file.num_row_groups):
            rows = self.file.metadata.row_group(group).num_rows
            if rows < 0:  # the footer is input too; a negative count would make len() fail
                self.file.close()
                raise InputError(path, f"not a readable Parquet file (row group {group} claims {rows} rows)")
            self.starts.append(self.starts[-1] + rows)
        self.lock = threading.Lock()  # a ParquetFile is not safe to read from two threads
        self.cached: tuple[int, object] = (-1, None)

    def __len__(self) -> int:
        return self.starts[-1]

    def get(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        group = bisect.bisect_right(self.starts, index) - 1
        with self.lock:
            cached_group, table = self.cached
            if cached_group != group:
                table = read_group(self.path, self.file, group, self.starts[group])
                self.cached = (group, table)
        rows = to_rows(self.path, table.slice(index - self.starts[group], 1), index)
        if not rows:
            raise unreadable_record(self.path, index, f"row group {group} holds fewer rows than its metadata says")
        return parse_row(self.path, index, rows[0], self.split)

    def close(self) -> None:
        self.file.close()


class ParquetSink(Sink):
    name = "parquet"
    description = "Parquet shards (pyarrow; Hugging Face datasets Image layout), zstd-compressed labels"
    requires = (("pyarrow", "parquet"),)

    def shard_name(self, split: str, index: int, num_shards: int) -> str:
        return f"{split}-{index:05d}-of-{num_shards:05d}.parquet"

    def open_writer(self, stream: BinaryIO) -> ShardWriter:
        return ParquetWriter(stream)

    def read_shard(self, path: str) -> Iterator[Sample]:
        split = split_of_shard(path)
        index = 0
        with open_shard(path) as parquet_file:
            for group in range(parquet_file.num_row_groups):
                for row in to_rows(path, read_group(path, parquet_file, group, index), index):
                    yield parse_row(path, index, row, split)
                    index += 1

    def open_random_access(self, path: str) -> RandomAccessShard:
        return ParquetShard(path)


@hookimpl
def register_sinks(register):
    register(ParquetSink)
