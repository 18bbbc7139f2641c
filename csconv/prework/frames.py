"""One frame's prework, in a worker process: read its annotation files, write its outputs
(files beside a hidden temporary renamed into place, or objects each uploaded whole)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import storage
from ..core.panoptic_gt import JsonEntries
from ..core.png import set_max_pixels
from ..core.prework import panoptic_files, polygon_files
from ..core.sources import read_file
from .plan import FrameTask
from .records import file_entry


@dataclass(frozen=True)
class FrameDone:
    key: str
    files: dict[str, dict]  # path -> {"bytes", "crc32c"}
    entries: JsonEntries | None  # in the split JSONs


def make_frame(task: FrameTask) -> FrameDone:
    previous_max_pixels = set_max_pixels(task.max_pixels)
    # Set here, in the process that writes: a spawned worker does not inherit the parent's.
    storage.configure(task.storage_options)
    try:
        return _make_frame(task)
    finally:
        set_max_pixels(previous_max_pixels)


def _make_frame(task: FrameTask) -> FrameDone:
    kinds = {kind for kind, _ in task.outputs}
    contents, entries = {}, None
    if task.polygons is not None and any(kind.from_polygons for kind in kinds):
        contents.update(polygon_files(read_file(task.polygons), str(task.polygons), kinds, task.compress_level))
    if task.instance_ids is not None and (task.json_kinds or any(not kind.from_polygons for kind in kinds)):
        panoptic, entries = panoptic_files(
            read_file(task.instance_ids), str(task.instance_ids), task.instance_ids_name, kinds, task.json_kinds,
            task.compress_level,
        )
        contents.update(panoptic)
    outputs = {path: contents[kind] for kind, path in task.outputs}
    storage.write_files_unsynced(outputs)  # into a bucket, all at once
    return FrameDone(task.key, {path: file_entry(data) for path, data in outputs.items()}, entries)
