"""What a sink is: the contract every output format, built-in or third-party, fulfils."""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from collections.abc import Iterator
from typing import BinaryIO, ClassVar

from ..core.errors import InputError
from ..core.records import Sample


def unreadable_record(path: str, index: int, problem: str) -> InputError:
    """The error of a shard record a reader cannot parse: one line naming the shard and the record."""
    return InputError(path, f"record {index}: unreadable ({problem})")


def split_of_shard(path: str) -> str:
    """The split a shard holds, from its file name: every sink names shards `<split>-...`."""
    return os.path.basename(path).split("-", 1)[0]


class ShardWriter:
    """Writes the samples of one shard into an open binary file, in order."""

    def write(self, sample: Sample) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the format (footers, indexes). The caller closes and commits the file."""


class RandomAccessShard:
    """The samples of one shard by position: what csconv.read() indexes.

    Opened in the process that reads (csconv.read() reopens shards after a fork), and
    may be read from several threads at once (Grain's prefetch).
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def get(self, index: int) -> Sample:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MaterialisedShard(RandomAccessShard):
    """Every sample of a shard held in memory: random access for a format with no index."""

    def __init__(self, samples: list[Sample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def get(self, index: int) -> Sample:
        return self.samples[index]


_seek_lock = threading.Lock()


def read_at(file, offset: int, size: int) -> bytes:
    """`size` bytes of an open file at `offset`, or fewer at its end, without using the
    file position, which other threads reading the same file share."""
    if not hasattr(os, "pread"):  # Windows
        with _seek_lock:
            file.seek(offset)
            return file.read(size)
    parts = []
    while size > 0:
        part = os.pread(file.fileno(), size, offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
        size -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class Sink:
    """An output format.

    Subclasses set ``name`` (what ``--sink`` takes) and ``description``, and implement
    ``shard_name``, ``open_writer`` (or, with ``writes_path``, ``open_path_writer``) and
    ``read_shard``; ``open_random_access`` where the format has an index. Writers run
    inside worker processes: a sink class must be importable by its module path, and
    hold no state that cannot be rebuilt from its constructor.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # (importable module, csconv extra that installs it) for optional packages the
    # sink imports on first use, so a missing one only disables this sink.
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    # True for a format whose library opens the file itself, by name: csconv then calls
    # open_path_writer() with the shard's hidden temporary path instead of open_writer(),
    # and checksums and renames the file the library closed (output.AdoptedShardFile).
    writes_path: ClassVar[bool] = False

    @classmethod
    def missing_requirement(cls) -> str | None:
        """How to install what this sink lacks, or None when it can run."""
        for module, extra in cls.requires:
            if importlib.util.find_spec(module) is None:
                return f"the {cls.name} sink needs {module}: pip install 'csconv[{extra}]'"
        return None

    def shard_name(self, split: str, index: int, num_shards: int) -> str:
        raise NotImplementedError

    def is_shard_name(self, name: str) -> bool:
        """Whether `name` is a shard file this sink writes, for any split, index and shard count.

        Derived from shard_name() itself, so third-party sinks get it for free: files
        of an earlier layout (another --num_shards) are found and never read as output.
        """
        return _shard_pattern(type(self)).fullmatch(name) is not None

    def open_writer(self, stream: BinaryIO) -> ShardWriter:
        raise NotImplementedError

    def safe_to_fork(self) -> bool:
        """Whether this process may fork the workers that write this format.

        A format whose library keeps threads a forked child cannot inherit says False
        once the library has been used in this process; its workers are then started
        afresh (spawn), which costs a second or two.
        """
        return True

    def open_path_writer(self, path: str) -> ShardWriter:
        """For a sink with ``writes_path``: a writer creating the file at `path` itself.

        `path` is a temporary name; csconv renames the file into place after close().
        """
        raise NotImplementedError

    def refuses(self, sample: Sample) -> str | None:
        """Why this format cannot hold `sample`, or None.

        Asked before a sample is written, so a frame the format cannot take is a bad
        input frame (an error naming its image, or skipped with --keep_going) and never
        a half-written record.
        """
        return None

    def read_shard(self, path: str) -> Iterator[Sample]:
        """The samples of one shard, as written: the reading side used by verify and tests.

        A shard that is not what this sink writes (damaged, truncated, foreign) raises
        InputError naming it and the record (unreadable_record), as open_random_access()
        and its get() do: csconv prints that as one line.
        """
        raise NotImplementedError

    def open_random_access(self, path: str) -> RandomAccessShard:
        """The samples of one shard by position (csconv.read()).

        This default reads the whole shard into memory; a format that can find one
        record without reading the others should override it.
        """
        return MaterialisedShard(list(self.read_shard(path)))


# Values no real shard name holds, so where shard_name() puts each one is unambiguous.
_SPLIT_MARK, _INDEX_MARK, _COUNT_MARK = "zqxsplitzqx", 918273645, 546372819
_patterns: dict[type, re.Pattern] = {}


def _shard_pattern(sink_class: type) -> re.Pattern:
    if sink_class not in _patterns:
        sample = sink_class().shard_name(_SPLIT_MARK, _INDEX_MARK, _COUNT_MARK)
        pattern = re.escape(sample)
        for mark, wildcard in ((_SPLIT_MARK, r"\w+"), (str(_INDEX_MARK), r"\d+"), (str(_COUNT_MARK), r"\d+")):
            pattern = pattern.replace(re.escape(mark), wildcard)
        _patterns[sink_class] = re.compile(pattern)
    return _patterns[sink_class]
