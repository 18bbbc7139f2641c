"""The output folder: which files in it are csconv's, and readying it for a run.

csconv owns, in an output folder: the manifest; every file the manifest lists; every
file named like a shard of the run's sink or of the sink an earlier manifest names
(any split, index and shard count, so shards of another --num_shards count too); the
completion record `.<shard>.done` of any of these; and the temporary `.<name>.partial`
of any of these. Everything else is the user's and is never touched.
"""

from __future__ import annotations

import os

from .. import plugins
from . import manifest, resume
from ..core.errors import CsconvError
from .manifest import MANIFEST_NAME
from ..output import TEMP_SUFFIX, OutputError, describe_os_error, temp_name
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


def make_output_dir(output_dir: str) -> None:
    """Create the folder (and its parents); an OutputError naming it if that is not possible."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise OutputError(f"{output_dir}: --output_dir names a file, not a folder")
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{output_dir}: cannot create the output folder ({describe_os_error(error)})") from None


def remove_file(path: str) -> None:
    """Remove a file if it is there; an OutputError naming it when it cannot be removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise OutputError(f"{path}: cannot remove ({describe_os_error(error)})") from None


def _unlink(output_dir: str, name: str) -> None:
    remove_file(os.path.join(output_dir, name))


def prepare(
    output_dir: str, jobs: list[ShardJob], sink, overwrite: bool = False, resume_run: bool = False
) -> dict[str, ShardResult]:
    """Clean up after killed runs, refuse or replace earlier output; the shards --resume keeps."""
    try:
        names = set(os.listdir(output_dir))
    except OSError as error:
        raise OutputError(f"{output_dir}: cannot list the output folder ({describe_os_error(error)})") from None
    previous = manifest.shard_entries(output_dir) if MANIFEST_NAME in names else {}
    sinks = [sink] + [s for s in [_previous_sink(output_dir, names)] if s is not None and type(s) is not type(sink)]
    owned = OwnedFiles(names, sinks, set(previous))
    for name in owned.temporaries:  # left by a killed run
        _unlink(output_dir, name)
    if owned.files and not (overwrite or resume_run):
        raise CsconvError(
            f"{output_dir}: already holds {len(owned.files)} csconv output file(s) (e.g. {owned.files[0]}); "
            "pass --resume to finish an interrupted run or --overwrite to replace them"
        )
    planned = {MANIFEST_NAME}
    for job in jobs:
        planned |= {job.shard_name, resume.record_name(job.shard_name)}
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


def remove_temporaries(output_dir: str, jobs: list[ShardJob]) -> None:
    """The temporary files this run may have left (its shards', records' and manifest's)."""
    names = [MANIFEST_NAME]
    for job in jobs:
        names += [job.shard_name, resume.record_name(job.shard_name)]
    for name in names:
        try:
            os.unlink(os.path.join(output_dir, temp_name(name)))
        except OSError:
            pass  # already gone, or the folder itself is unusable: nothing more to clean
