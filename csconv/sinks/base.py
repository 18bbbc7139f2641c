"""What a sink is: the contract every output format, built-in or third-party, fulfils."""

from __future__ import annotations

import importlib.util
import os
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

    def open_writer(self, stream: BinaryIO) -> ShardWriter:
        raise NotImplementedError

    def read_shard(self, path: str) -> Iterator[Sample]:
        """The samples of one shard, as written: the reading side used by verify and tests."""
        raise NotImplementedError
