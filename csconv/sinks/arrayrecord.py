"""ArrayRecord shards, `<split>-0000k-of-0000N.array_record`: DeepLab2's tf.train.Example per frame,
in the random-access container Grain, TFDS and Kauldron read.

Each record is exactly the TFRecord sink's serialized Example (the same encoder), so
DeepLab2's parser reads it unchanged; only the container differs. Shards are written
with `group_size:1`, the options TFDS uses: one record per chunk, so reading any record
decompresses only that record (Kauldron refuses other group sizes). The chunk
compression is ArrayRecord's default, zstd level 3: a 2048x1024 raw panoptic label
(8 MiB) shrinks to tens of KiB (under 75 KiB a frame with the container, on
full-size synthetic frames), the PNG image does not shrink.

ArrayRecord's writer opens its file by name (it has no stream interface), so this sink
sets `writes_path`: csconv gives it the shard's temporary path, then checksums and
renames the file the writer closed (output.AdoptedShardFile).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

from ..core.errors import InputError
from ..core.records import Sample
from ..hookspecs import hookimpl
from ..storage.local import path_writer_error
from .base import RandomAccessShard, ShardWriter, split_of_shard, unreadable_record
from .tfrecord import ExampleShardsSink, example_parts, parse_record

ARRAY_RECORD_MODULE = "array_record.python.array_record_module"
WRITER_OPTIONS = "group_size:1"
# ArrayRecord's reader defaults read ahead 16 MB on a thread pool, for sequential scans;
# these are its documented settings for random access.
RANDOM_ACCESS_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"
# A scan reads one chunk at a time on the calling thread: every chunk is one record
# already, and no reader thread is left behind in a process that forks workers later.
SEQUENTIAL_OPTIONS = "max_parallelism:0"


class ArrayRecordShardWriter(ShardWriter):
    def __init__(self, path: str):
        from array_record.python.array_record_module import ArrayRecordWriter

        self.path = path
        self.writer = ArrayRecordWriter(path, WRITER_OPTIONS)
        if not self.writer.ok():
            # The constructor keeps its failure (e.g. the file cannot be opened) for the
            # first call that reports it.
            self._raise_from(self.writer.close)

    def write(self, sample: Sample) -> None:
        # The binding takes bytes only: the one copy of the record this sink makes.
        record = b"".join(example_parts(sample))
        self._raise_from(self.writer.write, record)

    def close(self) -> None:
        self._raise_from(self.writer.close)

    def _raise_from(self, call, *args) -> None:
        try:
            call(*args)
        except RuntimeError as error:  # riegeli's status message: what failed, on which file
            raise path_writer_error(self.path, str(error)) from None


def open_reader(path: str, options: str):
    """An ArrayRecordReader of `path`, or an InputError naming it when the file is not a
    readable ArrayRecord file (the reader then counts no records, and only close() says why)."""
    from array_record.python.array_record_module import ArrayRecordReader

    try:
        reader = ArrayRecordReader(path, options)
    except (RuntimeError, ValueError, MemoryError) as error:
        # A header that claims an absurd size makes the C++ reader fail while opening,
        # as a std::length_error ("basic_string::resize") that pybind11 gives as ValueError.
        raise InputError(path, f"not a readable ArrayRecord file ({error})") from None
    if not reader.ok():
        try:
            reader.close()
        except RuntimeError as error:  # riegeli's status message
            raise InputError(path, f"not a readable ArrayRecord file ({error})") from None
        raise InputError(path, "not a readable ArrayRecord file")
    return reader


def read_record(path: str, index: int, read, *args):
    try:
        return read(*args)
    except RuntimeError as error:  # riegeli's status message: a damaged chunk, a hash mismatch
        raise unreadable_record(path, index, str(error)) from None


def close_reader(reader) -> None:
    try:
        reader.close()
    except RuntimeError:
        pass  # a reader that failed says so again on close: the failure was raised already


class ArrayRecordShard(RandomAccessShard):
    def __init__(self, path: str):
        self.path, self.split = path, split_of_shard(path)
        self.reader = open_reader(path, RANDOM_ACCESS_OPTIONS)
        self.lock = threading.Lock()  # one reader, one position: reads take turns

    def __len__(self) -> int:
        return self.reader.num_records()

    def get(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        with self.lock:
            (record,) = read_record(self.path, index, self.reader.read, [index])
        return parse_record(self.path, index, record, self.split)

    def close(self) -> None:
        close_reader(self.reader)


class ArrayRecordSink(ExampleShardsSink):
    name = "arrayrecord"
    description = "ArrayRecord shards (group_size:1) of DeepLab2's tf.train.Example, for Grain / TFDS / Kauldron"
    requires = (("array_record", "arrayrecord"),)
    writes_path = True

    def shard_name(self, split: str, index: int, num_shards: int) -> str:
        return f"{split}-{index:05d}-of-{num_shards:05d}.array_record"

    def safe_to_fork(self) -> bool:
        # Reading or writing a shard starts riegeli's background cleaner thread (it frees
        # pooled zstd contexts); a forked child that then compresses or decompresses
        # waits on that thread's state and segfaults, often (seen 9 times in 10). A
        # conversion's own main process never loads the module; a Python session that
        # read or wrote ArrayRecord before may have.
        return ARRAY_RECORD_MODULE not in sys.modules

    def open_path_writer(self, path: str) -> ShardWriter:
        return ArrayRecordShardWriter(path)

    def serialized_examples(self, path: str) -> Iterator[bytes]:
        """The serialized tf.train.Examples of a shard, in order (verify compares their features)."""
        reader = open_reader(path, SEQUENTIAL_OPTIONS)
        try:
            for index in range(reader.num_records()):
                yield read_record(path, index, reader.read)
        finally:
            close_reader(reader)

    def open_random_access(self, path: str) -> RandomAccessShard:
        return ArrayRecordShard(path)


@hookimpl
def register_sinks(register):
    register(ArrayRecordSink)
