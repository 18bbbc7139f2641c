"""One shard job: the frames it holds, how it is written, and what it reports back.

Runs in worker processes: everything here must pickle and stand alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .. import plugins, storage
from . import resume
from ..core.errors import CsconvError, InputError
from ..core.png import DEFAULT_MAX_PIXELS, set_max_pixels
from ..core.records import ConvertOptions, Frame
from ..core.samples import Annotation, build_sample
from ..storage import DIGESTS, OutputError


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
    max_pixels: int = DEFAULT_MAX_PIXELS  # the most pixels a PNG header may claim (png.set_max_pixels)
    storage_options: dict = field(default_factory=dict, hash=False)  # for URLs, as --storage_options
    staging_area: str | None = None  # for a bucket: the local folder shards are staged in before their upload


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
    # For a bucket: the shard, complete but staged locally, which the main process
    # uploads and then records (uploads.py); None once published.
    staged: storage.Staged | None = None

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


def open_shard(sink, directory: str, name: str, sha256: bool = False, staging_area: str | None = None):
    """The shard's temporary file and the sink's writer into it, as (shard, writer).

    A sink whose library opens the file itself (Sink.writes_path) is given the temporary
    path, which AdoptedShardFile checksums and renames at commit; every other sink
    writes a ShardFile stream.
    """
    if sink.writes_path:
        shard = storage.open_adopted_shard(directory, name, sha256=sha256, staging_area=staging_area)
    else:
        shard = storage.open_shard_file(directory, name, sha256=sha256, staging_area=staging_area)
    try:
        writer = sink.open_path_writer(shard.temp_path) if sink.writes_path else sink.open_writer(shard)
    except BaseException:
        shard.abort()
        raise
    return shard, writer


def write_shard(job: ShardJob, report=None) -> ShardResult:
    """Convert and write one shard. Runs in a worker process; `report(n)` counts frames."""
    # Set here, in the process that decodes: a spawned worker does not inherit the parent's.
    previous_max_pixels = set_max_pixels(job.max_pixels)
    storage.configure(job.storage_options)
    try:
        return _write_shard(job, report)
    finally:
        set_max_pixels(previous_max_pixels)


def _write_shard(job: ShardJob, report=None) -> ShardResult:
    sink = plugins.get_sink(job.sink_name)
    shard, writer = open_shard(sink, job.output_dir, job.shard_name, job.sha256, job.staging_area)
    skipped: list[SkippedFrame] = []
    written = 0
    try:
        for offset, (frame, annotation) in enumerate(zip(job.frames, job.annotations)):
            try:
                sample = build_sample(frame, job.options, annotation, job.decode_check)
                problem = sink.refuses(sample)
                if problem:
                    raise InputError(frame.image_path, problem)
            except OutputError:
                raise
            except CsconvError as error:
                if not job.keep_going:
                    raise
                path = getattr(error, "path", str(frame.image_path))
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
        job.split, job.index, job.shard_name, written, shard.size, shard.digests, job.fingerprint, tuple(skipped),
        staged=shard.staged,
    )
    if result.staged is None:
        resume.write_record(job.output_dir, result.entry())
    return result


def publish(result: ShardResult, output_dir: str) -> ShardResult:
    """Upload a staged shard, then write its completion record: the result of a shard
    that is in place."""
    result.staged.upload()
    published = replace(result, staged=None)
    resume.write_record(output_dir, published.entry())
    return published
