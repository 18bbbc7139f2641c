"""Samples built in worker processes and yielded in order (csconv.samples(workers=N)).

A panoptic sample is about 10 MB (the PNG image and 8 MiB of int32 label). Returned
through the process pool's pipe it is pickled, pushed through the pipe 64 KiB at a time
and unpickled: four copies and hundreds of system calls, which cost the receiving
process more CPU than a conversion's parent spends in all. So on Linux a worker writes
the image and label to a file in a tmpfs folder (/dev/shm) of this iteration and returns
only the rest; the caller reads them back with one readv() and removes the file: one copy
each way. Where there is no such folder, or it is full, the sample goes through the pipe.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice

import numpy as np

from ..core.errors import CsconvError
from ..core.records import Sample
from ..core.samples import build_sample

SHARED_MEMORY_FOLDER = "/dev/shm"


@dataclasses.dataclass(frozen=True)
class HandedOver:
    """A sample whose image and label wait in a file: what the worker returns instead."""

    path: str
    rest: Sample  # the sample without its image and label
    image_size: int
    label_kind: str | None  # "array", "bytes" or None (no label)
    label_size: int
    label_dtype: str = ""
    label_shape: tuple[int, ...] = ()


def in_order(jobs: list[tuple], workers: int, lookahead: int) -> Iterator[Sample]:
    """build_sample(*job) of every job in worker processes, yielded in the jobs' order, at
    most `lookahead` frames ahead of the one yielded."""
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker)
    folder = _handover_folder()
    try:
        queued = iter(enumerate(jobs))
        pending: deque = deque()

        def submit_next() -> None:
            for number, job in islice(queued, 1):
                path = folder and os.path.join(folder, str(number))
                pending.append((job[0], executor.submit(_build, path, job)))

        for _ in range(lookahead):
            submit_next()
        while pending:
            frame, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                raise CsconvError(
                    f"{frame.image_path}: the worker process building this frame died (out of memory?)"
                ) from None
            submit_next()
            yield _take(result) if isinstance(result, HandedOver) else result
    finally:
        # Also when the caller stops early: queued frames are dropped, running ones end,
        # and the files of frames never taken go with the folder.
        executor.shutdown(wait=True, cancel_futures=True)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def _handover_folder() -> str | None:
    if not os.path.isdir(SHARED_MEMORY_FOLDER):
        return None
    try:
        return tempfile.mkdtemp(prefix="csconv-samples-", dir=SHARED_MEMORY_FOLDER)
    except OSError:
        return None


def _build(path: str | None, job: tuple) -> Sample | HandedOver:
    sample = build_sample(*job)
    if path is None:
        return sample
    try:
        return _hand_over(path, sample)
    except OSError:  # the tmpfs is full or refuses: the pipe still works
        try:
            os.unlink(path)
        except OSError:
            pass
        return sample


def _hand_over(path: str, sample: Sample) -> HandedOver:
    parts = [sample.image]
    label = sample.label
    if label is None:
        kind, size, dtype, shape = None, 0, "", ()
    elif isinstance(label, np.ndarray):
        label = np.ascontiguousarray(label)
        kind, size, dtype, shape = "array", label.nbytes, label.dtype.str, label.shape
        parts.append(memoryview(label).cast("B"))
    else:
        kind, size, dtype, shape = "bytes", len(label), "", ()
        parts.append(label)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        written = os.writev(fd, parts)
    finally:
        os.close(fd)
    if written != len(sample.image) + size:
        raise OSError(f"{path}: short write")
    rest = dataclasses.replace(sample, image=b"", label=None)
    return HandedOver(path, rest, len(sample.image), kind, size, dtype, shape)


def _take(handed: HandedOver) -> Sample:
    fd = os.open(handed.path, os.O_RDONLY)
    try:
        image = os.read(fd, handed.image_size)
        read = len(image)
        label: np.ndarray | bytes | None = None
        if handed.label_kind == "array":
            label = np.empty(handed.label_shape, handed.label_dtype)
            read += os.readv(fd, [memoryview(label).cast("B")])
        elif handed.label_kind == "bytes":
            label = os.read(fd, handed.label_size)
            read += len(label)
    finally:
        os.close(fd)
        os.unlink(handed.path)
    if read != handed.image_size + handed.label_size:
        raise CsconvError(f"{handed.path}: the worker's hand-over file is shorter than it wrote")
    return dataclasses.replace(handed.rest, image=image, label=label)


def _init_worker() -> None:
    from .allocator import keep_frame_buffers
    from .workers import _die_with_parent

    # Ctrl-C reaches the whole process group; the caller's process decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    keep_frame_buffers()
