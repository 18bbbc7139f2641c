"""The conversion run: discover frames, cut them into shards, write shards in parallel.

Failure behaviour (see README, "Failure behaviour"):
- a shard appears under its final name only complete (output.ShardFile), followed by a
  completion record (resume.py); the manifest is written last, and absorbs the records;
- SIGINT / SIGTERM stop the workers, remove temporary files and raise RunInterrupted;
- a bad frame stops the run (InputError), or with keep_going is left out of its shard
  and listed under `skipped` in the manifest; no other frame moves to another shard.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import __version__, checks, plugins, resume
from .allocator import keep_frame_buffers
from .core import discover
from .core.errors import CsconvError
from .core.records import ConvertOptions, Frame, Source, Task
from .core.sources import Dataset, open_dataset
from .core.samples import TEST_SPLIT, Annotation, build_sample, load_prepared_annotations
from .output import DIGESTS, OutputError, ShardFile, is_temp_name, temp_name, write_atomically
from .progress import Progress
from .resume import Interrupted, RunInterrupted

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
    start: int = 0  # index within the split of the shard's first frame
    fingerprint: str = ""
    keep_going: bool = False
    decode_check: bool = False
    sha256: bool = False


@dataclass(frozen=True)
class SkippedFrame:
    split: str
    index: int  # position in the split's sorted frame list
    shard: str
    path: str  # the file at fault
    reason: str


@dataclass(frozen=True)
class ShardResult:
    split: str
    index: int
    name: str
    records: int
    bytes: int
    digests: dict  # whole-file checksums: crc32c always, sha256 with --sha256
    fingerprint: str = ""
    skipped: tuple[SkippedFrame, ...] = ()
    kept: bool = False  # taken over from an interrupted run by --resume

    def entry(self) -> dict:
        return {
            "name": self.name,
            "split": self.split,
            "index": self.index,
            "records": self.records,
            "bytes": self.bytes,
            **self.digests,
            "fingerprint": self.fingerprint,
            "skipped": [s.__dict__ for s in self.skipped],
        }

    @classmethod
    def from_entry(cls, entry: dict, kept: bool = False) -> "ShardResult":
        return cls(
            split=entry["split"], index=entry["index"], name=entry["name"], records=entry["records"],
            bytes=entry["bytes"], digests={k: entry[k] for k in DIGESTS if k in entry},
            fingerprint=entry["fingerprint"],
            skipped=tuple(SkippedFrame(**s) for s in entry.get("skipped", ())), kept=kept,
        )


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


def write_shard(job: ShardJob, report=None) -> ShardResult:
    """Convert and write one shard. Runs in a worker process; `report(n)` counts frames."""
    sink = plugins.get_sink(job.sink_name)
    shard = ShardFile(job.output_dir, job.shard_name, sha256=job.sha256)
    skipped: list[SkippedFrame] = []
    written = 0
    try:
        writer = sink.open_writer(shard)
        for offset, (frame, annotation) in enumerate(zip(job.frames, job.annotations)):
            try:
                if job.decode_check:
                    checks.decode_check(frame, job.options, annotation)
                sample = build_sample(frame, job.options, annotation)
                checks.check_sample(frame, job.options, sample)
            except OutputError:
                raise
            except CsconvError as error:
                if not job.keep_going:
                    raise
                path = getattr(error, "path", frame.image_path)
                reason = getattr(error, "problem", str(error))
                skipped.append(SkippedFrame(job.split, job.start + offset, job.shard_name, path, reason))
            else:
                writer.write(sample)
                written += 1
            if report is not None:
                report(1)
        writer.close()
        shard.commit()
    except BaseException:
        shard.abort()
        raise
    result = ShardResult(
        job.split, job.index, job.shard_name, written, shard.size, shard.digests, job.fingerprint, tuple(skipped)
    )
    resume.write_record(job.output_dir, result.entry())
    return result


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
) -> tuple[list[ShardJob], dict[str, int]]:
    sink = plugins.get_sink(sink_name)
    jobs, sizes = [], {}
    for split in splits or default_splits(dataset):
        frames = discover.find_frames(dataset, split)
        if not frames:
            raise CsconvError(f"{dataset.images_base}/{split}: no *_leftImg8bit.png images in this split")
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


def _manifest_entries(output_dir: str) -> dict[str, dict]:
    """Shard entries of an existing manifest, by name ({} when there is none or it is unreadable)."""
    try:
        with open(os.path.join(output_dir, MANIFEST_NAME), "rb") as f:
            manifest = json.load(f)
        entries = {
            s["name"]: {**s, "split": split, "index": index, "skipped": []}
            for split, info in manifest["splits"].items()
            for index, s in enumerate(info["shards"])
            if os.sep not in s["name"] and not s["name"].startswith(".")
        }
        for skipped in manifest.get("skipped", ()):
            if skipped.get("shard") in entries:
                entries[skipped["shard"]]["skipped"].append(skipped)
        return entries
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def prepare_output_dir(
    output_dir: str, jobs: list[ShardJob], overwrite: bool = False, resume_run: bool = False
) -> dict[str, ShardResult]:
    """Clean up after killed runs, refuse or replace earlier output; the shards --resume keeps."""
    os.makedirs(output_dir, exist_ok=True)
    existing = set(os.listdir(output_dir))
    for name in existing:
        if is_temp_name(name):  # left by a killed run
            os.unlink(os.path.join(output_dir, name))
    shard_names = {job.shard_name for job in jobs}
    previous = _manifest_entries(output_dir) if MANIFEST_NAME in existing else {}
    own = shard_names | {resume.record_name(n) for n in shard_names} | {MANIFEST_NAME}
    clash = sorted(existing & own)
    if clash and not (overwrite or resume_run):
        raise CsconvError(
            f"{output_dir}: already holds {len(clash)} csconv output file(s) (e.g. {clash[0]}); "
            "pass --resume to finish an interrupted run or --overwrite to replace them"
        )
    kept: dict[str, ShardResult] = {}
    if resume_run:
        for job in jobs:
            entry = resume.read_record(output_dir, job.shard_name) or previous.get(job.shard_name)
            if resume.proves_complete(output_dir, entry, job.fingerprint):
                result = ShardResult.from_entry({**entry, "split": job.split, "index": job.index}, kept=True)
                if resume.read_record(output_dir, job.shard_name) is None:
                    resume.write_record(output_dir, result.entry())  # the manifest goes below
                kept[job.shard_name] = result
    stale = set(previous) | shard_names if overwrite else shard_names
    for name in sorted(stale - set(kept)):
        for path in (os.path.join(output_dir, name), os.path.join(output_dir, resume.record_name(name))):
            if os.path.basename(path) in existing:
                os.unlink(path)
    if MANIFEST_NAME in existing:
        # From here on the completion records describe the folder; a manifest appears
        # again only when this run has finished.
        os.unlink(os.path.join(output_dir, MANIFEST_NAME))
    return kept


def _remove_temporaries(output_dir: str, jobs: list[ShardJob]) -> None:
    for job in jobs:
        for name in (job.shard_name, resume.record_name(job.shard_name)):
            try:
                os.unlink(os.path.join(output_dir, temp_name(name)))
            except FileNotFoundError:
                pass


def _init_worker(queue) -> None:
    # The parent decides how to stop: workers ignore Ctrl-C (sent to the whole process
    # group) and die at once on the SIGTERM of pool.terminate(); the parent then removes
    # their temporary files.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _ignore_file_size_signal()
    _die_with_parent()
    global _progress_queue
    _progress_queue = queue


_progress_queue = None


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the main process dies, so that no orphan keeps writing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _ignore_file_size_signal() -> None:
    # Without this, hitting RLIMIT_FSIZE kills the process instead of raising EFBIG.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _worker_write_shard(job: ShardJob) -> ShardResult:
    return write_shard(job, report=_progress_queue.put)


def run(jobs: list[ShardJob], workers: int, progress: Progress, done: list | None = None) -> list[ShardResult]:
    """Write every job's shard; results sorted by (split, index). `done` collects them as they finish."""
    _ignore_file_size_signal()
    keep_frame_buffers()  # before the workers fork, so they inherit it
    done = [] if done is None else done
    jobs_by_size = sorted(jobs, key=lambda job: -len(job.frames))  # big shards first keeps both cores busy
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs_by_size:
            done.append(write_shard(job, report=progress.advance))
    elif jobs:
        _run_parallel(jobs_by_size, workers, progress, done)
    return sorted(done, key=lambda r: (r.split, r.index))


def _run_parallel(jobs: list[ShardJob], workers: int, progress: Progress, results: list) -> list[ShardResult]:
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    queue = context.SimpleQueue()
    # Raising from a signal handler in the middle of the pool's own locking can leave
    # it unable to terminate; here a signal only sets a flag, acted on between polls.
    _signal_state.deferred = True
    try:
        pool = context.Pool(processes=min(workers, len(jobs)), initializer=_init_worker, initargs=(queue,))
        try:
            pending = pool.imap_unordered(_worker_write_shard, jobs, chunksize=1)
            remaining = len(jobs)
            while remaining:
                _raise_if_signalled()
                try:
                    result = pending.next(timeout=0.1)
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
    finally:
        _signal_state.deferred = False
    _raise_if_signalled()
    return results


def write_manifest(output_dir: str, sink_name: str, options: ConvertOptions, summary: RunSummary, num_shards: int):
    """Deterministic: the same run gives the same bytes, whatever --workers or --resume."""
    manifest = {
        "csconv_version": __version__,
        "sink": sink_name,
        "options": resume.options_dict(options),
        "num_shards": num_shards,
        "splits": {
            split: {
                "records": sum(s.records for s in summary.shards if s.split == split),
                "frames": count,
                "shards": [
                    {
                        "name": s.name, "records": s.records, "bytes": s.bytes, **s.digests,
                        "fingerprint": s.fingerprint,
                    }
                    for s in summary.shards
                    if s.split == split
                ],
            }
            for split, count in summary.splits.items()
        },
        # --keep_going: frames left out of their shard (index = position in the split).
        "skipped": [skipped.__dict__ for skipped in summary.skipped],
    }
    write_atomically(os.path.join(output_dir, MANIFEST_NAME), (json.dumps(manifest, indent=2) + "\n").encode())


class _SignalState:
    deferred = False  # True: a signal is recorded, and raised at the next safe point
    received: int | None = None


_signal_state = _SignalState()


def _raise_if_signalled() -> None:
    if _signal_state.received is not None:
        signum, _signal_state.received = _signal_state.received, None
        raise Interrupted(signum)


@contextmanager
def _signals_raise_interrupted():
    """SIGINT and SIGTERM raise Interrupted in the main thread while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if _signal_state.deferred:
            _signal_state.received = signum
        else:
            raise Interrupted(signum)

    _signal_state.received = None
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
        _raise_if_signalled()
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def _signals_ignored():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def default_splits(dataset: Dataset) -> list[str]:
    """train, val and test, those the input holds: archives may carry only some."""
    present = [split for split in discover.SPLITS if dataset.has_split(split)]
    if not present:
        raise CsconvError(f"{dataset.images_base}: holds none of the splits {', '.join(discover.SPLITS)}")
    for split in discover.SPLITS:
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
) -> RunSummary:
    """Convert a Cityscapes root (a tree, or a folder with the two official archives,
    or the archives named by gtfine_zip and images_zip) into sharded output."""
    if num_shards < 1:
        raise CsconvError("--num_shards must be at least 1")
    if overwrite and resume_run:
        raise CsconvError("--overwrite and --resume exclude each other")
    dataset = open_dataset(root, gtfine_zip, images_zip)
    jobs, sizes = plan(
        dataset, splits, sink_name, output_dir, options, num_shards, strict_sizes,
        keep_going=keep_going, decode_check=decode_check, sha256=sha256,
    )
    os.makedirs(output_dir, exist_ok=True)
    with resume.output_lock(output_dir):
        kept = prepare_output_dir(output_dir, jobs, overwrite, resume_run)
        todo = [job for job in jobs if job.shard_name not in kept]
        progress = Progress(sum(len(job.frames) for job in todo), enabled=show_progress)
        done: list[ShardResult] = []
        try:
            with _signals_raise_interrupted():
                try:
                    run(todo, workers, progress, done)
                finally:
                    progress.close()
                results = sorted([*kept.values(), *done], key=lambda r: (r.split, r.index))
                summary = RunSummary(splits=sizes, shards=results, seconds=progress.elapsed)
                write_manifest(output_dir, sink_name, options, summary, num_shards)
        except BaseException as error:
            with _signals_ignored():  # a second Ctrl-C must not interrupt the clean-up
                _remove_temporaries(output_dir, jobs)
                try:
                    os.unlink(os.path.join(output_dir, temp_name(MANIFEST_NAME)))
                except FileNotFoundError:
                    pass
            completed = len(kept) + len(done)
            signalled, _signal_state.received = _signal_state.received, None
            if isinstance(error, (Interrupted, KeyboardInterrupt)) or signalled is not None:
                signum = error.signum if isinstance(error, Interrupted) else (signalled or signal.SIGINT)
                raise RunInterrupted(signum, completed, len(jobs), output_dir) from None
            if isinstance(error, CsconvError) and completed:
                error.add_note(f"{completed} of {len(jobs)} shards were completed and are kept for --resume")
            raise
        for job in jobs:
            resume.remove_record(output_dir, job.shard_name)
    return summary
