"""What a prework run has written, so that --resume can keep it.

While a run writes, a journal records one JSON line per completed frame (its files'
sizes and CRC32C, and its entries in the split JSONs) and per split JSON. When the run
ends, `csconv-prework-manifest.json` is written (atomically) in the output root with
every file's size and CRC32C, and the journal is removed.

In a local folder the journal is one hidden file `.csconv-prework-journal`, appended to
one line per write; a kill leaves at most its last line cut short. When the run ends,
every file is synced to disk once before the manifest is written (fsynced).

In a bucket an object cannot be appended to, so the journal is a folder-like prefix
`.csconv-prework-journal/` of small objects `<sequence>.jsonl` (BucketJournal), each
uploaded whole with storage.write_atomically: records are buffered and written as one
segment every SEGMENT_RECORDS records or SEGMENT_SECONDS seconds (checked as records
arrive) and when the journal is closed. A kill loses at most the records not yet
written; --resume simply makes those frames again, uploading over whatever a lost
record's objects hold. A run starts its segments after the highest sequence number it
finds, writes what it keeps as its first segment and only then removes the older ones,
so that a kill at any point leaves the proofs of what is kept. No file needs syncing:
an object is durable once published.

A file is kept by --resume only when a record of the same fingerprint (csconv, Pillow
and zlib versions and the PNG compression level: all that decides the bytes besides
the input) names it and the file has the recorded size and CRC32C; a split JSON also
needs the same frame list. For a bucket one recursive listing of the output prefix
(Listing) gives every object's size, the segments and the manifest; the CRC32C is the
store's own where it keeps one (GCS, in the listing itself), else the object is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from crc32c import crc32c

from .. import __version__, storage
from ..core.panoptic_gt import JsonEntries
from ..storage.local import OutputError, describe_os_error, file_digests, write_atomically

MANIFEST_NAME = "csconv-prework-manifest.json"
JOURNAL_NAME = ".csconv-prework-journal"  # a file; in a bucket, the prefix of the segments
# A bucket journal's segment is written after this many records, or this many seconds
# after the previous one (when a record arrives), whichever comes first.
SEGMENT_RECORDS = 64
SEGMENT_SECONDS = 2.0
_SEGMENT = re.compile(r"([0-9]{8,})\.jsonl")
# Objects whose CRC32C --resume reads at once (S3 keeps none csconv can use).
_CHECKING_THREADS = 8


def fingerprint(compress_level: int | None) -> str:
    import PIL

    doc = {"csconv": __version__, "pillow": PIL.__version__, "zlib": zlib.ZLIB_RUNTIME_VERSION,
           "png_compress_level": compress_level}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def file_entry(data: bytes) -> dict:
    return {"bytes": len(data), "crc32c": f"{crc32c(data):08x}"}


@dataclass
class Listing:
    """What a bucket's output prefix holds, from one recursive listing: every object's
    size (and the store's CRC32C where the listing carries it), by URL."""

    root: str
    objects: dict[str, dict]

    @classmethod
    def of(cls, root: str) -> "Listing":
        return cls(root, storage.list_files(root))

    def segments(self) -> list[str]:
        """The journal segments, in sequence order."""
        prefix = storage.join(self.root, JOURNAL_NAME) + "/"
        found = [(int(match.group(1)), url) for url in self.objects if url.startswith(prefix)
                 for match in [_SEGMENT.fullmatch(url[len(prefix):])] if match]
        return [url for _, url in sorted(found)]


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

    def proven_objects(self, listing: Listing, wanted: list[tuple[str, str | None]]) -> set[str]:
        """Of the (relative path, JSON inputs or None) wanted, those whose object is in the
        bucket as recorded: size from the listing, CRC32C from it (GCS) or by reading the
        object (S3 and others: one request each, several at once)."""
        to_read = {}
        proven = set()
        for relative, inputs in wanted:
            entry = self.files.get(relative)
            if entry is None or entry.get("inputs") != inputs:
                continue
            found = listing.objects.get(storage.join(listing.root, relative))
            if found is None or found["size"] != entry.get("bytes"):
                continue
            if found.get("crc32c") is not None:
                if found["crc32c"] == entry.get("crc32c"):
                    proven.add(relative)
            else:
                to_read[relative] = storage.join(listing.root, relative)

        def crc32c_of(url: str) -> str | None:
            # Prework files are small: one GET each, not a lookup and then a read.
            try:
                return f"{crc32c(storage.read_bytes(url)):08x}"
            except (FileNotFoundError, storage.StorageError):
                return None  # gone or unreadable: not proven, made again

        with ThreadPoolExecutor(_CHECKING_THREADS) as pool:
            for relative, crc in zip(to_read, pool.map(crc32c_of, to_read.values())):
                if crc is not None and crc == self.files[relative].get("crc32c"):
                    proven.add(relative)
        return proven

    def add_lines(self, lines, run_fingerprint: str) -> None:
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
                self.files.update(files)
            if entries is not None:
                self.entries[record.get("frame")] = entries


def read_proofs(root: str, run_fingerprint: str, listing: Listing | None = None) -> Proofs:
    """From the manifest of a finished run and the journal of an interrupted one (for a
    bucket: its segments, as `listing` found them)."""
    proofs = Proofs()
    manifest_path = storage.join(root, MANIFEST_NAME)
    there = listing is None or manifest_path in listing.objects  # a listed bucket is not asked again
    manifest = _load_json(manifest_path) if there else None
    if isinstance(manifest, dict) and manifest.get("fingerprint") == run_fingerprint:
        files = manifest.get("files")
        if isinstance(files, dict):
            proofs.files.update(files)
    if listing is not None:
        for url in listing.segments():
            try:
                proofs.add_lines(storage.read_bytes(url).splitlines(), run_fingerprint)
            except (FileNotFoundError, storage.StorageError):
                continue  # removed meanwhile, or unreadable: proves nothing
        return proofs
    try:
        with open(os.path.join(root, JOURNAL_NAME), "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    proofs.add_lines(lines, run_fingerprint)
    return proofs


def _load_json(path: str):
    try:
        return json.loads(storage.read_bytes(path))
    except (OSError, ValueError, storage.StorageError):
        return None


def open_journal(root: str, run_fingerprint: str, kept: Proofs, listing: Listing | None = None):
    """This run's journal: a local file (Journal), or segments in a bucket (BucketJournal)."""
    if storage.is_url(root):
        return BucketJournal(root, run_fingerprint, kept, listing.segments() if listing is not None else [])
    return Journal(root, run_fingerprint, kept)


def _record_line(run_fingerprint: str, files: dict | None = None, frame: str | None = None,
                 entries: JsonEntries | None = None) -> bytes:
    record: dict = {"fingerprint": run_fingerprint}
    if files:
        record["files"] = files
    if frame is not None:
        record["frame"] = frame
    if entries is not None:
        record["json"] = entries.to_json()
    return (json.dumps(record, sort_keys=True) + "\n").encode()


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
        return _record_line(self.fingerprint, files, frame, entries)

    def add(self, files: dict[str, dict], frame: str | None = None, entries: JsonEntries | None = None) -> None:
        """One record, in one write: a kill leaves at most this line cut short."""
        data = self._line(files, frame, entries)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as error:
            raise OutputError(f"{self.path}: cannot write the journal ({describe_os_error(error)})") from None

    def close(self, flush: bool = True) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class BucketJournal:
    """The journal of this run in a bucket: segments `<JOURNAL_NAME>/<sequence>.jsonl`,
    each uploaded whole (see the module's docstring). It starts with what the run keeps."""

    def __init__(self, root: str, run_fingerprint: str, kept: Proofs, old_segments: list[str]):
        self.prefix = storage.join(root, JOURNAL_NAME)
        self.fingerprint = run_fingerprint
        numbers = [int(_SEGMENT.fullmatch(url.rsplit("/", 1)[1]).group(1)) for url in old_segments]
        self._next = max(numbers, default=0) + 1
        self._written: list[str] = []
        self._lines: list[bytes] = []
        self._last_flush = time.monotonic()
        if kept.files:
            self._lines.append(self._line(files=kept.files))
        self._lines += [self._line(frame=key, entries=entries) for key, entries in kept.entries.items()]
        self.flush()
        # Only now: a kill before this line leaves the old segments' proofs, and after it the new one's.
        for url in old_segments:
            storage.remove(url)

    def _line(self, files: dict | None = None, frame: str | None = None, entries: JsonEntries | None = None) -> bytes:
        return _record_line(self.fingerprint, files, frame, entries)

    def add(self, files: dict[str, dict], frame: str | None = None, entries: JsonEntries | None = None) -> None:
        """One record, written with the next segment."""
        self._lines.append(self._line(files, frame, entries))
        if len(self._lines) >= SEGMENT_RECORDS or time.monotonic() - self._last_flush >= SEGMENT_SECONDS:
            self.flush()

    def flush(self) -> None:
        """The buffered records as one more segment."""
        if self._lines:
            url = storage.join(self.prefix, f"{self._next:08d}.jsonl")
            storage.write_atomically(url, b"".join(self._lines))
            self._written.append(url)
            self._next += 1
            self._lines = []
        self._last_flush = time.monotonic()

    def close(self, flush: bool = True) -> None:
        """Write what is buffered (flush=False, or a store that fails: it is lost, and its
        frames are made again by --resume)."""
        try:
            if flush:
                self.flush()
        except storage.StorageError:
            pass
        self._lines = []

    def remove(self) -> None:
        self._lines = []
        for url in self._written:
            storage.remove(url)
        self._written = []


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
    storage.write_atomically(storage.join(root, MANIFEST_NAME), text.encode())


def remove_manifest(root: str) -> None:
    storage.remove(storage.join(root, MANIFEST_NAME))
