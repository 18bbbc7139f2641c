"""The conversion run: discover frames, cut them into shards, write shards in parallel."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import warnings
from dataclasses import asdict, dataclass, field

from . import __version__, plugins
from .core import discover
from .core.errors import CsconvError
from .core.records import ConvertOptions, Frame, Source, Task
from .core.samples import TEST_SPLIT, Annotation, build_sample, load_prepared_annotations
from .output import ShardFile, is_temp_name, write_atomically
from .progress import Progress

MANIFEST_NAME = "csconv-manifest.json"


@dataclass(frozen=True)
class ShardJob:
    sink_name: str
    output_dir: str
    split: str
    index: int
    num_shards: int
    shard_name: str
    frames: tuple[Frame, ...]
    annotations: tuple[Annotation | None, ...]
    options: ConvertOptions


@dataclass(frozen=True)
class ShardResult:
    split: str
    index: int
    name: str
    records: int
    bytes: int
    sha256: str


@dataclass
class RunSummary:
    splits: dict[str, int] = field(default_factory=dict)
    shards: list[ShardResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def records(self) -> int:
        return sum(s.records for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)


class SplitSizeWarning(UserWarning):
    pass


def write_shard(job: ShardJob, report=None) -> ShardResult:
    """Convert and write one shard. Runs in a worker process; `report(n)` counts frames."""
    sink = plugins.get_sink(job.sink_name)
    shard = ShardFile(job.output_dir, job.shard_name)
    try:
        writer = sink.open_writer(shard)
        for frame, annotation in zip(job.frames, job.annotations):
            writer.write(build_sample(frame, job.options, annotation))
            if report is not None:
                report(1)
        writer.close()
        shard.commit()
    except BaseException:
        shard.abort()
        raise
    return ShardResult(job.split, job.index, job.shard_name, len(job.frames), shard.size, shard.sha256)


def plan(
    root: str,
    splits: list[str],
    sink_name: str,
    output_dir: str,
    options: ConvertOptions,
    num_shards: int = 10,
    strict_sizes: bool = False,
) -> tuple[list[ShardJob], dict[str, int]]:
    discover.check_root(root)
    sink = plugins.get_sink(sink_name)
    jobs, sizes = [], {}
    for split in splits:
        frames = discover.find_frames(root, split)
        if not frames:
            raise CsconvError(f"{os.path.join(root, 'leftImg8bit', split)}: no *_leftImg8bit.png images in this split")
        _check_size(split, len(frames), strict_sizes)
        sizes[split] = len(frames)
        annotations: list[Annotation | None] = [None] * len(frames)
        if options.task is Task.PANOPTIC and options.source is Source.PREPARED and split != TEST_SPLIT:
            by_id = load_prepared_annotations(root, split)
            annotations = [by_id.get(frame.name) for frame in frames]
        for index, (start, end) in enumerate(discover.shard_bounds(len(frames), num_shards)):
            jobs.append(
                ShardJob(
                    sink_name=sink_name,
                    output_dir=output_dir,
                    split=split,
                    index=index,
                    num_shards=num_shards,
                    shard_name=sink.shard_name(split, index, num_shards),
                    frames=tuple(frames[start:end]),
                    annotations=tuple(annotations[start:end]),
                    options=options,
                )
            )
    return jobs, sizes


def _check_size(split: str, count: int, strict: bool) -> None:
    expected = discover.OFFICIAL_SPLIT_SIZES.get(split)
    if expected is None or expected == count:
        return
    message = f"split {split!r} has {count} images; the official Cityscapes split has {expected}"
    if strict:
        raise CsconvError(message + " (--strict_sizes)")
    warnings.warn(message + " (DeepLab2 would refuse it; converting anyway)", SplitSizeWarning, stacklevel=3)


def prepare_output_dir(output_dir: str, shard_names: list[str], overwrite: bool) -> None:
    os.makedirs(output_dir, exist_ok=True)
    existing = set(os.listdir(output_dir))
    for name in existing:
        if is_temp_name(name):  # left by a killed run
            os.unlink(os.path.join(output_dir, name))
    clash = sorted(existing & (set(shard_names) | {MANIFEST_NAME}))
    if clash and not overwrite:
        raise CsconvError(
            f"{output_dir}: already holds {len(clash)} csconv output file(s) (e.g. {clash[0]}); "
            "pass --overwrite to replace them"
        )
    for name in clash:
        os.unlink(os.path.join(output_dir, name))


def _init_worker(queue) -> None:
    # The parent decides how to stop; workers must not die half-way through a write
    # on their own Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _ignore_file_size_signal()
    global _progress_queue
    _progress_queue = queue


_progress_queue = None


def _ignore_file_size_signal() -> None:
    # Without this, hitting RLIMIT_FSIZE kills the process instead of raising EFBIG.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _worker_write_shard(job: ShardJob) -> ShardResult:
    return write_shard(job, report=_progress_queue.put)


def run(jobs: list[ShardJob], workers: int, progress: Progress) -> list[ShardResult]:
    _ignore_file_size_signal()
    jobs_by_size = sorted(jobs, key=lambda job: -len(job.frames))  # big shards first keeps both cores busy
    if workers <= 1:
        results = [write_shard(job, report=progress.advance) for job in jobs_by_size]
    else:
        results = _run_parallel(jobs_by_size, workers, progress)
    return sorted(results, key=lambda r: (r.split, r.index))


def _run_parallel(jobs: list[ShardJob], workers: int, progress: Progress) -> list[ShardResult]:
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    queue = context.SimpleQueue()
    pool = context.Pool(processes=min(workers, len(jobs)), initializer=_init_worker, initargs=(queue,))
    results: list[ShardResult] = []
    try:
        pending = pool.imap_unordered(_worker_write_shard, jobs, chunksize=1)
        remaining = len(jobs)
        while remaining:
            try:
                result = pending.next(timeout=0.2)
            except multiprocessing.TimeoutError:
                result = None
            while not queue.empty():
                progress.advance(queue.get())
            if result is not None:
                results.append(result)
                remaining -= 1
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        while not queue.empty():
            progress.advance(queue.get())
    return results


def write_manifest(output_dir: str, sink_name: str, options: ConvertOptions, summary: RunSummary, num_shards: int):
    manifest = {
        "csconv_version": __version__,
        "sink": sink_name,
        "options": {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(options).items()},
        "num_shards": num_shards,
        "splits": {
            split: {
                "records": count,
                "shards": [
                    {"name": s.name, "records": s.records, "bytes": s.bytes, "sha256": s.sha256}
                    for s in summary.shards
                    if s.split == split
                ],
            }
            for split, count in summary.splits.items()
        },
    }
    write_atomically(os.path.join(output_dir, MANIFEST_NAME), (json.dumps(manifest, indent=2) + "\n").encode())


def convert(
    root: str,
    output_dir: str,
    sink_name: str = "tfrecord",
    splits: list[str] | None = None,
    options: ConvertOptions = ConvertOptions(),
    num_shards: int = 10,
    workers: int = 1,
    strict_sizes: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> RunSummary:
    if num_shards < 1:
        raise CsconvError("--num_shards must be at least 1")
    jobs, sizes = plan(root, list(splits or discover.SPLITS), sink_name, output_dir, options, num_shards, strict_sizes)
    prepare_output_dir(output_dir, [job.shard_name for job in jobs], overwrite)
    progress = Progress(sum(sizes.values()), enabled=show_progress)
    try:
        results = run(jobs, workers, progress)
    finally:
        progress.close()
    summary = RunSummary(splits=sizes, shards=results, seconds=progress.elapsed)
    write_manifest(output_dir, sink_name, options, summary, num_shards)
    return summary
