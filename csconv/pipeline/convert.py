"""The conversion run: plan the shards, prepare the output folder, run, write the manifest.

One shard's work is in shards.py, running the jobs in workers.py.

Failure behaviour (see README, "Failure behaviour"):
- a shard appears under its final name only complete (output.ShardFile), followed by a
  completion record (resume.py); the manifest is written last, and absorbs the records;
- SIGINT / SIGTERM stop the workers, remove temporary files and raise RunInterrupted;
- a bad frame stops the run (InputError), or with keep_going is left out of its shard
  and listed under `skipped` in the manifest; no other frame moves to another shard.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

from .. import plugins, storage
from . import manifest, output_folder, resume
from . import workers as worker_pool
from ..core import discover
from ..core.errors import CsconvError
from ..core.png import DEFAULT_MAX_PIXELS, check_max_pixels
from ..core.records import ConvertOptions, Source, Task
from ..core.sources import Dataset, open_dataset
from ..core.samples import TEST_SPLIT, Annotation, load_prepared_annotations
from .shards import ShardJob, ShardResult, SkippedFrame
from .progress import Progress

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

    @property
    def kept(self) -> int:
        return sum(1 for s in self.shards if s.kept)

    @property
    def skipped(self) -> list[SkippedFrame]:
        return [frame for s in self.shards for frame in s.skipped]


class SplitSizeWarning(UserWarning):
    pass


def plan(
    dataset: Dataset,
    splits: list[str] | None,
    sink_name: str,
    output_dir: str,
    options: ConvertOptions,
    num_shards: int = 10,
    strict_sizes: bool = False,
    keep_going: bool = False,
    decode_check: bool = False,
    sha256: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    storage_options: dict | None = None,
) -> tuple[list[ShardJob], dict[str, int]]:
    sink = plugins.get_sink(sink_name)
    jobs, sizes = [], {}
    for split in dict.fromkeys(splits or default_splits(dataset)):  # each split once, in the order given
        frames = discover.find_frames(dataset, split)
        if not frames:
            raise CsconvError(f"{dataset.images_dir(split)}: no *_leftImg8bit.png images in this split")
        _check_size(split, len(frames), strict_sizes)
        sizes[split] = len(frames)
        annotations: list[Annotation | None] = [None] * len(frames)
        if options.task is Task.PANOPTIC and options.source is Source.PREPARED and split != TEST_SPLIT:
            by_id = load_prepared_annotations(dataset.labels_base, split)
            annotations = [by_id.get(frame.name) for frame in frames]
        for index, (start, end) in enumerate(discover.shard_bounds(len(frames), num_shards)):
            shard_frames = tuple(frames[start:end])
            jobs.append(
                ShardJob(
                    sink_name=sink_name,
                    output_dir=output_dir,
                    split=split,
                    index=index,
                    num_shards=num_shards,
                    shard_name=sink.shard_name(split, index, num_shards),
                    frames=shard_frames,
                    annotations=tuple(annotations[start:end]),
                    options=options,
                    start=start,
                    fingerprint=resume.fingerprint(sink_name, options, split, index, num_shards, shard_frames, sha256),
                    keep_going=keep_going,
                    decode_check=decode_check,
                    sha256=sha256,
                    max_pixels=max_pixels,
                    storage_options=dict(storage_options or {}),
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


def default_splits(dataset: Dataset) -> list[str]:
    """train, val and test (coarse annotations: train, val, train_extra), those the input
    holds: archives may carry only some."""
    splits = dataset.annotations.splits
    present = [split for split in splits if dataset.has_split(split)]
    if not present:
        raise CsconvError(f"{dataset.images_base}: holds none of the splits {', '.join(splits)}")
    for split in splits:
        if split not in present:
            warnings.warn(f"the input holds no {split!r} split; converting {', '.join(present)}", stacklevel=3)
    return present


def convert(
    root: str | None,
    output_dir: str,
    sink_name: str = "tfrecord",
    splits: list[str] | None = None,
    options: ConvertOptions = ConvertOptions(),
    num_shards: int = 10,
    workers: int = 1,
    strict_sizes: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    resume_run: bool = False,
    keep_going: bool = False,
    decode_check: bool = False,
    sha256: bool = False,
    gtfine_zip: str | None = None,
    images_zip: str | None = None,
    gtcoarse_zip: str | None = None,
    extra_images_zip: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    storage_options: dict | None = None,
) -> RunSummary:
    """Convert a Cityscapes root (a tree, or a folder with the two official archives,
    or the archives named by gtfine_zip and images_zip; for coarse annotations gtcoarse_zip
    with images_zip and/or extra_images_zip) into sharded output. Any
    of the paths may be a URL (gs://, s3://, memory://, ...); storage_options go to fsspec."""
    if num_shards < 1:
        raise CsconvError("--num_shards must be at least 1")
    if overwrite and resume_run:
        raise CsconvError("--overwrite and --resume exclude each other")
    storage.configure(storage_options)
    named = (root, output_dir, gtfine_zip, images_zip, gtcoarse_zip, extra_images_zip)
    if any(storage.in_this_process_only(path) for path in named if path):
        workers = 1  # worker processes would each see their own, empty, memory://
    dataset = open_dataset(root, gtfine_zip, images_zip, options.annotations, gtcoarse_zip, extra_images_zip)
    jobs, sizes = plan(
        dataset, splits, sink_name, output_dir, options, num_shards, strict_sizes,
        keep_going=keep_going, decode_check=decode_check, sha256=sha256, max_pixels=check_max_pixels(max_pixels),
        storage_options=storage_options,
    )
    output_folder.make_output_dir(output_dir)
    with resume.output_lock(output_dir):
        kept = output_folder.prepare(output_dir, jobs, plugins.get_sink(sink_name), overwrite, resume_run)
        todo = [job for job in jobs if job.shard_name not in kept]
        progress = Progress(sum(len(job.frames) for job in todo), enabled=show_progress)
        done: list[ShardResult] = []
        staging_area = storage.make_staging_area() if storage.is_url(output_dir) else None
        todo = [replace(job, staging_area=staging_area) for job in todo]
        try:
            with worker_pool.signals_raise_interrupted():
                try:
                    worker_pool.run(todo, workers, progress, done)
                finally:
                    progress.close()
                results = sorted([*kept.values(), *done], key=lambda r: (r.split, r.index))
                summary = RunSummary(splits=sizes, shards=results, seconds=progress.elapsed)
                # Once the manifest is in place the run is complete and the completion records
                # it absorbed must go: a signal after the rename would report a finished run
                # as interrupted and leave records that make the folder look unfinished. The
                # rename is inside manifest.write: signals are ignored from just before it.
                worker_pool.ignore_signals()
                manifest.write(output_dir, sink_name, options, summary, num_shards)
                resume.remove_records(output_dir, [job.shard_name for job in jobs])
        except BaseException as error:
            with worker_pool.signals_ignored():  # a second Ctrl-C must not interrupt the clean-up
                output_folder.remove_temporaries(output_dir, jobs)
            stopped = worker_pool.stopped_run(error, len(kept) + len(done), len(jobs), output_dir, "shards")
            if stopped is not None:
                raise stopped from None
            raise
        finally:
            if staging_area is not None:
                storage.remove_staging_area(staging_area)
    return summary
