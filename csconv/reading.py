"""Random access to the samples of a converted output, whatever sink wrote it (csconv.read).

The manifest's per-shard record counts place a sample index in a shard; the sink's
open_random_access() finds the record there. Shards are opened on first use in the
process that reads, so the sequence pickles as its paths and counts: a PyTorch
DataLoader or Grain worker, forked or spawned, opens its own files.
"""

from __future__ import annotations

import bisect
import operator
import os
import threading
from collections.abc import Iterator, Sequence
from typing import overload

from . import storage
from .core.errors import CsconvError
from .core.records import Sample
from .sinks.base import RandomAccessShard, Sink


class OutputSplit(Sequence[Sample]):
    """The samples of one split of an output, by index, in record order.

    Supports len(), indexing (negative too) and slicing; a slice is another
    OutputSplit over the same files, read lazily like this one.
    """

    def __init__(self, output_dir: str, split: str, sink: Sink, sink_name: str, shards: list[tuple[str, int]],
                 label_divisor: int = 1000, indices: range | None = None):
        self.output_dir = output_dir
        self.split = split
        self.sink = sink
        self.sink_name = sink_name
        # The divisor panoptic ids were made with, for Sample.semantic_and_instance().
        self.label_divisor = label_divisor
        self._shards = shards  # (path, records) of every shard of the split, in order
        self._starts = [0]
        for _, count in shards:
            self._starts.append(self._starts[-1] + count)
        self._indices = range(self._starts[-1]) if indices is None else indices
        self._open: dict[int, RandomAccessShard] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> OutputSplit: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return OutputSplit(self.output_dir, self.split, self.sink, self.sink_name, self._shards,
                               self.label_divisor, self._indices[index])
        position = operator.index(index)  # numpy integers too, as samplers hand them out
        try:
            record = self._indices[position]
        except IndexError:
            raise IndexError(f"index {position} out of range for {len(self)} samples of split {self.split!r}") from None
        shard = bisect.bisect_right(self._starts, record) - 1
        return self._shard(shard).get(record - self._starts[shard])

    def __iter__(self) -> Iterator[Sample]:
        for position in range(len(self)):
            yield self[position]

    def __repr__(self) -> str:
        return f"<csconv.read({self.output_dir!r}, {self.split!r}): {len(self)} samples, {self.sink_name} sink>"

    def _shard(self, number: int) -> RandomAccessShard:
        if os.getpid() != self._pid:
            # A forked child shares the parent's open files, and their positions and
            # library state with them: it opens its own.
            self._open, self._pid, self._lock = {}, os.getpid(), threading.Lock()
        opened = self._open.get(number)
        if opened is None:
            with self._lock:  # Grain's prefetch threads may ask for the same shard at once
                opened = self._open.get(number)
                if opened is None:
                    local_path = storage.cached_copy(self._shards[number][0])  # an object: downloaded once
                    opened = self._open[number] = self.sink.open_random_access(local_path)
                    if len(opened) != self._shards[number][1]:
                        raise CsconvError(
                            f"{self._shards[number][0]}: holds {len(opened)} records, "
                            f"the manifest says {self._shards[number][1]}"
                        )
        return opened

    def close(self) -> None:
        """Close the shards this process opened (they reopen on the next access)."""
        opened, self._open = self._open, {}
        for shard in opened.values():
            shard.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_open"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid, self._lock = os.getpid(), threading.Lock()


def read(output_dir: str | os.PathLike, split: str) -> OutputSplit:
    """One split of a csconv output of any sink (or of DeepLab2's own TFRecord folder)."""
    from .inspection.verify import open_output  # the same reading of a folder as verify and --against

    output_dir = os.fspath(output_dir)
    output = open_output(output_dir)
    if split not in output.splits:
        raise CsconvError(f"{output_dir}: no split {split!r}; it holds {', '.join(output.splits) or 'no split'}")
    shards = []
    for entry in output.splits[split]:
        path = storage.join(output_dir, entry["name"])
        count = entry.get("records")
        if count is None:  # DeepLab2's own folder: no manifest to count the records
            if not storage.is_file(path):
                raise CsconvError(f"{path}: missing")
            opened = output.sink.open_random_access(storage.cached_copy(path))
            count = len(opened)
            opened.close()
        shards.append((path, count))
    divisor = 1000
    if output.has_manifest:
        from .pipeline.manifest import load

        divisor = int(load(output_dir).get("options", {}).get("label_divisor", 1000))
    return OutputSplit(output_dir, split, output.sink, output.sink_name, shards, divisor)
