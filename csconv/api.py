"""csconv's Python API: what `import csconv` offers (see README, "Python API").

convert() is the command line's conversion, samples() the core's samples with nothing
written, read() random access to any sink's output. Errors are CsconvError with the
command line's one-line messages.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence

from .core import discover
from .core.errors import CsconvError
from .core.png import DEFAULT_MAX_PIXELS
from .core.records import ConvertOptions, Sample, Source, Task
from .core.samples import TEST_SPLIT, build_sample, load_prepared_annotations
from .core.sources import open_dataset
from .pipeline.convert import RunSummary
from .pipeline.convert import convert as _convert
from .pipeline.resume import RunInterrupted
from .pipeline.sample_workers import in_order
from .reading import OutputSplit, read

PathLike = str | os.PathLike


def _fspath(path: PathLike | None) -> str | None:
    return None if path is None else os.fspath(path)


def _options(task: str | Task, source: str | Source, treat_crowd_as_ignore: bool, label_divisor: int,
             png_compress_level: int | None, annotations: str) -> ConvertOptions:
    for value, kind, name in ((task, Task, "task"), (source, Source, "source")):
        if value not in {member.value for member in kind}:
            choices = " or ".join(repr(member.value) for member in kind)
            raise CsconvError(f"{name} must be {choices}, got {value!r}")
    return ConvertOptions(task=Task(task), source=Source(source), treat_crowd_as_ignore=treat_crowd_as_ignore,
                          label_divisor=label_divisor, png_compress_level=png_compress_level,
                          annotations=annotations)


def _splits(splits: str | Sequence[str] | None) -> list[str] | None:
    if splits is None or isinstance(splits, str):
        return discover.parse_splits(splits)
    return discover.parse_splits(",".join(splits))


def convert(
    cityscapes_root: PathLike | None,
    output_dir: PathLike,
    *,
    sink: str = "tfrecord",
    create_panoptic_data: bool = True,
    treat_crowd_as_ignore: bool = True,
    splits: str | Sequence[str] | None = None,
    annotations: str = "fine",
    source: str = "raw",
    workers: int | None = None,
    num_shards: int = 10,
    label_divisor: int = 1000,
    png_compress_level: int | None = None,
    strict_sizes: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    keep_going: bool = False,
    decode_check: bool = False,
    sha256: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    gtfine_zip: PathLike | None = None,
    images_zip: PathLike | None = None,
    gtcoarse_zip: PathLike | None = None,
    extra_images_zip: PathLike | None = None,
    progress: bool = False,
    storage_options: dict | None = None,
) -> RunSummary:
    """Convert Cityscapes as `csconv --cityscapes_root R --output_dir O ...` does.

    Options are the command line's flags by name, with its defaults (`workers=None` is
    the CPU count); the output is byte for byte the command line's. Returns the run's
    summary (records, shards, bytes, seconds, skipped). A split of unofficial size is a
    SplitSizeWarning; bad input or output raises CsconvError with the command line's
    message (frames skipped with keep_going=True are in summary.skipped instead). Ctrl-C
    raises KeyboardInterrupt once the temporary files are removed.
    """
    options = _options(Task.PANOPTIC if create_panoptic_data else Task.SEMANTIC, source,
                       treat_crowd_as_ignore, label_divisor, png_compress_level, annotations)
    try:
        return _convert(
            root=_fspath(cityscapes_root), output_dir=os.fspath(output_dir), sink_name=sink,
            splits=_splits(splits), options=options, num_shards=num_shards,
            workers=(os.cpu_count() or 1) if workers is None else workers, strict_sizes=strict_sizes,
            overwrite=overwrite, show_progress=progress, resume_run=resume, keep_going=keep_going,
            decode_check=decode_check, sha256=sha256, max_pixels=max_pixels, gtfine_zip=_fspath(gtfine_zip),
            images_zip=_fspath(images_zip), gtcoarse_zip=_fspath(gtcoarse_zip),
            extra_images_zip=_fspath(extra_images_zip), storage_options=storage_options,
        )
    except RunInterrupted as stopped:
        if stopped.signum == signal.SIGINT:
            raise KeyboardInterrupt(str(stopped)) from None
        raise


def samples(
    cityscapes_root: PathLike | None,
    split: str,
    *,
    task: str = "panoptic",
    treat_crowd_as_ignore: bool = True,
    annotations: str = "fine",
    workers: int = 1,
    source: str = "raw",
    label_divisor: int = 1000,
    png_compress_level: int | None = None,
    decode_check: bool = False,
    gtfine_zip: PathLike | None = None,
    images_zip: PathLike | None = None,
    gtcoarse_zip: PathLike | None = None,
    extra_images_zip: PathLike | None = None,
    lookahead: int | None = None,
) -> Iterator[Sample]:
    """The samples of one split straight from the download (a tree or the two zips), in
    DeepLab2's record order, writing nothing: what convert() would store.

    `task` is "panoptic" or "semantic"; `annotations` "fine" (gtFine) or "coarse" (gtCoarse,
    semantic only; its splits are train, val and train_extra). With workers > 1, frames are built in that many
    worker processes and still yielded in order, at most `lookahead` (default 2 per
    worker) ahead of the one yielded, so memory stays bounded. The input is checked
    when this is called; a bad frame raises CsconvError when its turn comes.
    """
    options = _options(task, source, treat_crowd_as_ignore, label_divisor, png_compress_level, annotations)
    dataset = open_dataset(_fspath(cityscapes_root), _fspath(gtfine_zip), _fspath(images_zip), options.annotations,
                           _fspath(gtcoarse_zip), _fspath(extra_images_zip))
    frames = discover.find_frames(dataset, split)
    if not frames:
        raise CsconvError(f"{dataset.images_dir(split)}: no *_leftImg8bit.png images in this split")
    prepared = [None] * len(frames)
    if options.task is Task.PANOPTIC and options.source is Source.PREPARED and split != TEST_SPLIT:
        by_id = load_prepared_annotations(dataset.labels_base, split)
        prepared = [by_id.get(frame.name) for frame in frames]
    jobs = [(frame, options, annotation, decode_check) for frame, annotation in zip(frames, prepared)]
    if workers <= 1:
        return (build_sample(*job) for job in jobs)
    return in_order(jobs, workers, lookahead or 2 * workers)


__all__ = ["convert", "samples", "read", "OutputSplit", "RunSummary"]
