"""What a prework run has written, so that --resume can keep it.

While a run writes, a hidden journal `.csconv-prework-journal` in the output root gets
one JSON line per completed frame (its files' sizes and CRC32C, and its entries in the
split JSONs) and per split JSON. When the run ends, every file is
synced to disk once, `csconv-prework-manifest.json` is written (atomically, fsynced)
with every file's size and CRC32C, and the journal is removed.

A file is kept by --resume only when a record of the same fingerprint (csconv, Pillow
and zlib versions and the PNG compression level: all that decides the bytes besides
the input) names it and the file on disk has the recorded size and CRC32C; a split
JSON also needs the same frame list.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field

from crc32c import crc32c

from .. import __version__
from ..core.panoptic_gt import JsonEntries
from ..storage.local import OutputError, describe_os_error, file_digests, write_atomically
from ..pipeline.output_folder import remove_file

MANIFEST_NAME = "csconv-prework-manifest.json"
JOURNAL_NAME = ".csconv-prework-journal"


def fingerprint(compress_level: int | None) -> str:
    import PIL

    doc = {"csconv": __version__, "pillow": PIL.__version__, "zlib": zlib.ZLIB_RUNTIME_VERSION,
           "png_compress_level": compress_level}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def file_entry(data: bytes) -> dict:
    return {"bytes": len(data), "crc32c": f"{crc32c(data):08x}"}


@dataclass
class Proofs:
    """The records of earlier runs with this run's fingerprint."""

    files: dict[str, dict] = field(default_factory=dict)  # relative path -> entry
    entries: dict[str, JsonEntries] = field(default_factory=dict)  # frame key -> its entries in the split JSONs

    def proves(self, root: str, relative: str, inputs: str | None = None) -> bool:
        """Whether the file is there exactly as recorded (and, for a JSON, of the same frames)."""
        entry = self.files.get(relative)
        if entry is None or entry.get("inputs") != inputs:
            return False
        path = os.path.join(root, relative)
        try:
            return os.path.getsize(path) == entry["bytes"] and file_digests(path, ["crc32c"]) == {"crc32c": entry["crc32c"]}
        except (OSError, KeyError, TypeError):
            return False


def read_proofs(root: str, run_fingerprint: str) -> Proofs:
    """From the manifest of a finished run and the journal of an interrupted one."""
    proofs = Proofs()
    manifest = _load_json(os.path.join(root, MANIFEST_NAME))
    if isinstance(manifest, dict) and manifest.get("fingerprint") == run_fingerprint:
        files = manifest.get("files")
        if isinstance(files, dict):
            proofs.files.update(files)
    try:
        with open(os.path.join(root, JOURNAL_NAME), "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:  # a line cut short by a kill, or damaged, proves nothing
            record = json.loads(line)
            if record.get("fingerprint") != run_fingerprint:
                continue
            files = record.get("files", {})
            entries = JsonEntries.from_json(record["json"]) if "json" in record else None
        except (ValueError, TypeError, AttributeError, KeyError):
            continue
        if isinstance(files, dict):
            proofs.files.update(files)
        if entries is not None:
            proofs.entries[record.get("frame")] = entries
    return proofs


def _load_json(path: str):
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Journal:
    """The journal of this run, opened for appending; it starts with what the run keeps."""

    def __init__(self, root: str, run_fingerprint: str, kept: Proofs):
        self.path = os.path.join(root, JOURNAL_NAME)
        self.fingerprint = run_fingerprint
        self._fd = None
        lines = [self._line(files=kept.files)] if kept.files else []
        lines += [self._line(frame=key, entries=entries) for key, entries in kept.entries.items()]
        write_atomically(self.path, b"".join(lines))
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_BINARY", 0))
        except OSError as error:
            raise OutputError(f"{self.path}: cannot open the journal ({describe_os_error(error)})") from None

    def _line(self, files: dict | None = None, frame: str | None = None, entries: JsonEntries | None = None) -> bytes:
        record: dict = {"fingerprint": self.fingerprint}
        if files:
            record["files"] = files
        if frame is not None:
            record["frame"] = frame
        if entries is not None:
            record["json"] = entries.to_json()
        return (json.dumps(record, sort_keys=True) + "\n").encode()

    def add(self, files: dict[str, dict], frame: str | None = None, entries: JsonEntries | None = None) -> None:
        """One record, in one write: a kill leaves at most this line cut short."""
        data = self._line(files, frame, entries)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as error:
            raise OutputError(f"{self.path}: cannot write the journal ({describe_os_error(error)})") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def write_manifest(root: str, run_fingerprint: str, kinds, annotations, compress_level, counts: dict,
                   files: dict) -> None:
    """Deterministic: the same run gives the same bytes, whatever --workers or --resume."""
    head = {
        "csconv_version": __version__,
        "fingerprint": run_fingerprint,
        "make": [kind.value for kind in kinds],
        "annotations": [annotation_set.name for annotation_set in annotations],
        "png_compress_level": compress_level,
        "splits": counts,
    }
    # One line per file: tens of thousands of them would take four lines each indented.
    listed = ",\n".join(f"  {json.dumps(path)}: {json.dumps(entry, sort_keys=True)}" for path, entry in sorted(files.items()))
    text = json.dumps(head, indent=1)[: -len("\n}")] + ',\n "files": {\n' + listed + "\n }\n}\n"
    write_atomically(os.path.join(root, MANIFEST_NAME), text.encode())


def remove_manifest(root: str) -> None:
    remove_file(os.path.join(root, MANIFEST_NAME))
