"""A prework run: plan, ready the output, make the frames in workers, write the split
JSONs, sync once, write the manifest.

Failure behaviour, as conversion's: every file appears under its final name only
complete (written beside it under a hidden temporary name, then renamed; in a bucket,
uploaded whole by storage.write_atomically); a file this run would write that is
already there is refused unless --overwrite; --resume keeps what the records prove
complete (records.py); SIGINT / SIGTERM stop the workers, remove the temporary files
(a bucket: abort the S3 uploads left unfinished) and raise resume.RunInterrupted
(counting frames).

Input and output may be URLs (gs://, s3://, memory://, ...). A bucket output is looked
at once, with one recursive listing of the output prefix (records.Listing): the files
already there, the journal segments and the sizes --resume checks; never a request per
planned file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from .. import storage
from ..pipeline import workers as worker_pool
from ..core.errors import CsconvError
from ..core.panoptic_gt import json_document
from ..core.png import DEFAULT_MAX_PIXELS, check_max_pixels
from ..core.prework import DEFAULT_KINDS, Kind
from ..core.sources import FINE, annotation_set, open_gtfine
from ..storage.local import temp_name
from ..pipeline.progress import Progress
from ..pipeline.resume import output_lock
from . import records
from .frames import FrameDone, make_frame
from .plan import Layout, Plan, make_plan
from .pool import run_tasks


@dataclass
class PreworkSummary:
    counts: dict[str, dict[str, int]]  # split (gtCoarse/<split>) -> kind -> files of this run
    frames: int = 0  # frames made by this run
    written: int = 0  # files written by this run
    kept: int = 0  # files an earlier run had completed, kept by --resume
    bytes: int = 0  # of the files written
    seconds: float = 0.0


def prework(
    cityscapes_root: str,
    output_root: str | None = None,
    kinds=None,
    splits: list[str] | None = None,
    workers: int = 1,
    overwrite: bool = False,
    resume: bool = False,
    compress_level: int | None = None,
    show_progress: bool = False,
    panoptic_only_layout: bool = False,
    annotations=(FINE,),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    storage_options: dict | None = None,
) -> PreworkSummary:
    """Write the cityscapesscripts prework outputs of `kinds` (default: DeepLab2's tree;
    with coarse annotations alone, labelTrainIds) for the `annotations` sets ("fine",
    "coarse": gtFine, gtCoarse).

    Into the Cityscapes root itself, as cityscapesscripts does, or mirrored under
    `output_root` (needed when the root holds the zip archives). With
    `panoptic_only_layout` (eval-gt), the panoptic JSONs and folders go straight into
    `output_root`. Either may be a URL (gs://, s3://, memory://, ...); storage_options
    go to fsspec.
    """
    if overwrite and resume:
        raise CsconvError("--overwrite and --resume exclude each other")
    if workers < 1:
        raise CsconvError("--workers must be at least 1")
    storage.configure(storage_options)
    if any(storage.in_this_process_only(where) for where in (cityscapes_root, output_root) if where):
        workers = 1  # worker processes would each see their own, empty, memory://
    annotations = tuple(dict.fromkeys(annotation_set(name) for name in annotations))
    if not annotations:
        raise CsconvError("--annotations names no annotations")
    kinds = tuple(dict.fromkeys(kinds or default_kinds(annotations)))
    check_kinds(kinds, annotations)
    max_pixels = check_max_pixels(max_pixels)
    trees = [open_gtfine(cityscapes_root, name) for name in annotations]
    if output_root is None:
        for tree in trees:
            if tree.members is not None:
                raise CsconvError(
                    f"{tree.base.path}: the annotations are read from the archive, so give --output_root "
                    "(cityscapesscripts writes into the unpacked tree)"
                )
        output_root = cityscapes_root
    layout = Layout.panoptic_only(output_root) if panoptic_only_layout else Layout.cityscapes(output_root)
    plan = make_plan(trees, layout, kinds, splits, compress_level, max_pixels, storage_options)
    run_fingerprint = records.fingerprint(compress_level)

    storage.make_output_dir(output_root)
    with output_lock(output_root):
        for directory in sorted(plan.directories):
            storage.make_output_dir(directory)
        listing = None
        if storage.is_url(output_root):
            # What a killed run's unfinished uploads hold, then one listing of the prefix.
            storage.remove_leftovers(output_root, _leftover_names(plan, layout))
            listing = records.Listing.of(output_root)
            existing = [path for path in plan.paths() if path in listing.objects]
        else:
            existing = _remove_temporaries_and_list(plan)
        kept = records.Proofs()
        if resume:
            kept = _proven(records.read_proofs(output_root, run_fingerprint, listing), plan, layout, listing)
        elif existing and not overwrite:
            raise CsconvError(
                f"{existing[0]}: already exists ({len(existing)} of the {len(plan.paths())} files this run writes "
                "are there); pass --overwrite to replace them, or --resume to keep those an interrupted run completed"
            )
        journal = records.open_journal(output_root, run_fingerprint, kept, listing)
        # From here on the journal describes the folder; a manifest appears again only
        # when this run has finished.
        records.remove_manifest(output_root)
        return _run(plan, layout, kinds, annotations, compress_level, journal, kept, workers, show_progress)


def default_kinds(annotations) -> tuple[Kind, ...]:
    """DeepLab2's tree; for coarse annotations alone, what they make: labelTrainIds."""
    if FINE in annotations:
        return DEFAULT_KINDS
    return tuple(kind for kind in DEFAULT_KINDS if kind.from_polygons)


def check_kinds(kinds, annotations) -> None:
    panoptic = [kind.value for kind in kinds if not kind.from_polygons]
    if panoptic and FINE not in annotations:
        raise CsconvError(
            f"--make {','.join(panoptic)} needs --annotations fine: panoptic files are made from gtFine's "
            "*_instanceIds.png alone, as cityscapesscripts' csCreatePanopticImgs makes them"
        )


def _leftover_names(plan: Plan, layout: Layout) -> list[str]:
    """Every object name, relative to the output root, a run may leave an unfinished S3
    upload for: the planned files, the manifest, the journal's segments (a folder)."""
    return [layout.relative(path) for path in plan.paths()] + [records.MANIFEST_NAME, records.JOURNAL_NAME + "/"]


def _remove_temporaries_and_list(plan: Plan) -> list[str]:
    """Remove what killed runs left under this run's temporary names; the planned files
    that already exist, in plan order."""
    by_directory: dict[str, set[str]] = {}
    for path in plan.paths():
        directory, name = os.path.split(path)
        by_directory.setdefault(directory, set()).add(name)
    present = set()
    for directory, names in by_directory.items():
        temporaries = {temp_name(name) for name in names}
        for entry in os.listdir(directory):
            if entry in temporaries:
                storage.remove(os.path.join(directory, entry))
            elif entry in names:
                present.add(os.path.join(directory, entry))
    return [path for path in plan.paths() if path in present]


def _proven(proofs: records.Proofs, plan: Plan, layout: Layout, listing: records.Listing | None = None
            ) -> records.Proofs:
    """The records of the planned files that are on disk (in the bucket `listing` lists)
    as recorded, and the frames' JSON entries."""
    kept = records.Proofs()
    root = layout.root
    flavours = {split_json.kind.train_ids for split_json in plan.jsons}
    wanted = [(layout.relative(path), None) for task in plan.frames for _, path in task.outputs]
    wanted += [(layout.relative(split_json.path), split_json.inputs) for split_json in plan.jsons]
    if listing is not None:
        proven = proofs.proven_objects(listing, wanted)
    else:
        proven = {relative for relative, inputs in wanted if proofs.proves(root, relative, inputs)}
    for relative, _ in wanted:
        if relative in proven:
            kept.files[relative] = proofs.files[relative]
    for task in plan.frames:
        entries = proofs.entries.get(task.key)
        if entries is not None and flavours <= entries.annotations.keys():
            kept.entries[task.key] = entries
    return kept


@dataclass
class _Done:
    """What the run has done so far, as the main process learns it."""

    entries: dict = field(default_factory=dict)  # frame key -> JsonEntries
    files: dict = field(default_factory=dict)  # relative path -> entry
    frames_done: int = 0
    bytes: int = 0


def _run(plan, layout, kinds, annotations, compress_level, journal, kept, workers, show_progress) -> PreworkSummary:
    root = layout.root
    jsons_to_write = [j for j in plan.jsons if layout.relative(j.path) not in kept.files]
    # A frame's entries are made again if they are not kept; and then for every JSON still
    # to write, to be journaled whole.
    json_kinds = tuple(dict.fromkeys(j.kind for j in jsons_to_write))
    tasks = []
    for task in plan.frames:
        outputs = tuple((kind, path) for kind, path in task.outputs if layout.relative(path) not in kept.files)
        wants_entries = bool(task.json_kinds and json_kinds) and task.key not in kept.entries
        if outputs or wants_entries:
            tasks.append(replace(task, outputs=outputs, json_kinds=json_kinds if wants_entries else ()))
    done = _Done(entries=dict(kept.entries), files=dict(kept.files))
    progress = Progress(len(tasks), enabled=show_progress)

    def on_done(result: FrameDone) -> None:
        files = {layout.relative(path): entry for path, entry in result.files.items()}
        journal.add(files, result.key if result.entries else None, result.entries)
        done.files.update(files)
        done.bytes += sum(entry["bytes"] for entry in files.values())
        if result.entries is not None:
            done.entries[result.key] = result.entries
        done.frames_done += 1
        progress.advance()

    try:
        with worker_pool.signals_raise_interrupted():
            try:
                run_tasks(make_frame, tasks, workers, on_done, root)
            finally:
                progress.close()
            for split_json in jsons_to_write:
                data = json_document([done.entries[key] for key in split_json.frame_keys], split_json.kind.train_ids)
                storage.write_file_unsynced(split_json.path, data)
                entry = {**records.file_entry(data), "inputs": split_json.inputs}
                journal.add({layout.relative(split_json.path): entry})
                done.files[layout.relative(split_json.path)] = entry
                done.bytes += len(data)
            storage.sync_file_system(root)
            # The manifest's rename ends the run: a signal from here on would report a
            # finished run as interrupted.
            worker_pool.ignore_signals()
            records.write_manifest(root, journal.fingerprint, kinds, annotations, compress_level, plan.counts,
                                   done.files)
            journal.remove()
    except BaseException as error:
        with worker_pool.signals_ignored():  # a second Ctrl-C must not interrupt the clean-up
            # A store that failed is not asked again (its retries would only delay the error).
            store_failed = isinstance(error, storage.StorageError)
            journal.close(flush=not store_failed)
            try:
                if not storage.is_url(root):
                    _remove_temporaries_and_list(plan)
                elif not store_failed:
                    storage.remove_leftovers(root, _leftover_names(plan, layout))
            except (OSError, CsconvError):
                pass  # the folder itself is unusable: the error being raised says why
        stopped = worker_pool.stopped_run(error, done.frames_done, len(tasks), root, "frames")
        if stopped is not None:
            raise stopped from None
        raise
    written = len(done.files) - len(kept.files)
    return PreworkSummary(plan.counts, done.frames_done, written, len(kept.files), done.bytes, progress.elapsed)
