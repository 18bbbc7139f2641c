"""The output folder: which files in it are csconv's, and readying it for a run.

csconv owns, in an output folder: the manifest; every file the manifest lists; every
file named like a shard of the run's sink or of the sink an earlier manifest names
(any split, index and shard count, so shards of another --num_shards count too); the
completion record `.<shard>.done` of any of these; and the temporary `.<name>.partial`
of any of these. Everything else is the user's and is never touched.
"""

from __future__ import annotations

from .. import plugins, storage
from . import manifest, resume
from ..core.errors import CsconvError
from .manifest import MANIFEST_NAME
from ..storage.local import TEMP_SUFFIX
from .shards import ShardJob, ShardResult


class OwnedFiles:
    """csconv's files among the names of one output folder."""

    def __init__(self, names: set[str], sinks, listed: set[str]):
        self._sinks = sinks
        self._listed = listed
        self.temporaries = sorted(n for n in names if self._is_temporary(n))
        temporaries = set(self.temporaries)
        self.files = sorted(n for n in names - temporaries if self._is_owned(n))

    def _is_output(self, name: str) -> bool:
        return name == MANIFEST_NAME or name in self._listed or any(s.is_shard_name(name) for s in self._sinks)

    def _is_owned(self, name: str) -> bool:
        if name.startswith(".") and name.endswith(resume.RECORD_SUFFIX):
            return self._is_output(name[1 : -len(resume.RECORD_SUFFIX)])
        return self._is_output(name)

    def _is_temporary(self, name: str) -> bool:
        return name.startswith(".") and name.endswith(TEMP_SUFFIX) and self._is_owned(name[1 : -len(TEMP_SUFFIX)])


def _previous_sink(output_dir: str, names: set[str]):
    """The sink an existing manifest names, when it is readable and that sink is registered."""
    if MANIFEST_NAME not in names:
        return None
    try:
        return plugins.get_sink(manifest.load(output_dir)["sink"])
    except (CsconvError, KeyError, TypeError):
        return None


make_output_dir = storage.make_output_dir
remove_file = storage.remove


def _unlink(output_dir: str, name: str) -> None:
    storage.remove(storage.join(output_dir, name))


def prepare(
    output_dir: str, jobs: list[ShardJob], sink, overwrite: bool = False, resume_run: bool = False
) -> dict[str, ShardResult]:
    """Clean up after killed runs, refuse or replace earlier output; the shards --resume keeps."""
    names = set(storage.list_names(output_dir))
    previous = manifest.shard_entries(output_dir) if MANIFEST_NAME in names else {}
    sinks = [sink] + [s for s in [_previous_sink(output_dir, names)] if s is not None and type(s) is not type(sink)]
    owned = OwnedFiles(names, sinks, set(previous))
    for name in owned.temporaries:  # left by a killed run
        _unlink(output_dir, name)
    if storage.is_url(output_dir):  # a killed run's unfinished uploads, where the store keeps them
        storage.remove_leftovers(output_dir, _planned_names(jobs))
    if owned.files and not (overwrite or resume_run):
        raise CsconvError(
            f"{output_dir}: already holds {len(owned.files)} csconv output file(s) (e.g. {owned.files[0]}); "
            "pass --resume to finish an interrupted run or --overwrite to replace them"
        )
    planned = _planned_names(jobs)
    foreign = [name for name in owned.files if name not in planned]
    if resume_run and foreign:
        raise CsconvError(
            f"{output_dir}: holds {len(foreign)} csconv file(s) this run would not write (e.g. {foreign[0]}), "
            "left by a run with another sink, --num_shards or --splits; --resume only finishes the same "
            "run: pass --overwrite to replace them"
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
    keep = {name for shard in kept for name in (shard, resume.record_name(shard))}
    # The manifest goes too: from here on the completion records describe the folder,
    # and a manifest appears again only when this run has finished.
    for name in owned.files:
        if name not in keep:
            _unlink(output_dir, name)
    return kept


def _planned_names(jobs: list[ShardJob]) -> set[str]:
    """Every file the run may write: the manifest, and each shard with its completion record."""
    planned = {MANIFEST_NAME}
    for job in jobs:
        planned |= {job.shard_name, resume.record_name(job.shard_name)}
    return planned


def remove_temporaries(output_dir: str, jobs: list[ShardJob]) -> None:
    """What this run's unfinished writes may have left (its shards', records' and manifest's):
    hidden temporary files, or unfinished uploads in a bucket."""
    try:
        storage.remove_leftovers(output_dir, sorted(_planned_names(jobs)))
    except storage.StorageError:
        pass  # the store itself is unusable: nothing more to clean
