"""What a sink is: the contract every output format, built-in or third-party, fulfils."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from typing import BinaryIO, ClassVar

from ..core.records import Sample


def split_of_shard(path: str) -> str:
    """The split a shard holds, from its file name: every sink names shards `<split>-...`."""
    return os.path.basename(path).split("-", 1)[0]


class ShardWriter:
    """Writes the samples of one shard into an open binary file, in order."""

    def write(self, sample: Sample) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the format (footers, indexes). The caller closes and commits the file."""


class Sink:
    """An output format.

    Subclasses set ``name`` (what ``--sink`` takes) and ``description``, and implement
    ``shard_name``, ``open_writer`` and ``read_shard``. Writers run inside worker
    processes: a sink class must be importable by its module path, and hold no state
    that cannot be rebuilt from its constructor.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # (importable module, csconv extra that installs it) for optional packages the
    # sink imports on first use, so a missing one only disables this sink.
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()

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

    def refuses(self, sample: Sample) -> str | None:
        """Why this format cannot hold `sample`, or None.

        Asked before a sample is written, so a frame the format cannot take is a bad
        input frame (an error naming its image, or skipped with --keep_going) and never
        a half-written record.
        """
        return None

    def read_shard(self, path: str) -> Iterator[Sample]:
        """The samples of one shard, as written: the reading side used by verify and tests."""
        raise NotImplementedError


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
