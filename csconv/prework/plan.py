"""What a prework run writes, and where: one task per annotated frame, one JSON per split
and panoptic kind."""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field

from .. import storage
from ..core.errors import InputError
from ..core.panoptic_gt import panoptic_png_name, split_names
from ..core.prework import (
    INSTANCE_IDS_PATTERN, INSTANCE_IDS_SUFFIX, POLYGONS_PATTERN, POLYGONS_SUFFIX, Kind, is_instance_ids_file,
    is_polygons_file, label_file_name,
)
from ..core.png import DEFAULT_MAX_PIXELS
from ..core.sources import FINE, GtFine, Location


@dataclass(frozen=True)
class Layout:
    """Where the outputs go. `root` holds the manifest; records name files relative to it.
    Any of them may be a URL (a bucket prefix): paths are made with storage.join."""

    root: str
    labels_root: str  # label files go to <labels_root>/<gtFine or gtCoarse>/<split>/<city>/, beside the polygons
    panoptic_dir: str  # the panoptic JSONs and PNG folders

    @classmethod
    def cityscapes(cls, root: str) -> "Layout":
        """As cityscapesscripts writes into a Cityscapes root: labels beside their polygons,
        the panoptic files inside gtFine/."""
        return cls(root, root, storage.join(root, FINE.folder))

    @classmethod
    def panoptic_only(cls, folder: str) -> "Layout":
        """`eval-gt`: the panoptic JSONs and folders straight in `folder`."""
        return cls(folder, folder, folder)

    def label_file(self, folder: str, split: str, city: str, polygons_name: str, kind: Kind) -> str:
        return storage.join(self.labels_root, folder, split, city, label_file_name(polygons_name, kind))

    def panoptic_file(self, split: str, kind: Kind, instance_ids_name: str) -> str:
        _, folder = split_names(split, kind.train_ids)
        return storage.join(self.panoptic_dir, folder, panoptic_png_name(instance_ids_name))

    def panoptic_json(self, split: str, kind: Kind) -> str:
        name, _ = split_names(split, kind.train_ids)
        return storage.join(self.panoptic_dir, name)

    def relative(self, path: str) -> str:
        if storage.is_url(self.root):
            return path[len(self.root.rstrip("/")) + 1:]
        return os.path.relpath(path, self.root).replace(os.sep, "/")


@dataclass(frozen=True)
class FrameTask:
    """One annotated frame: its input files and the outputs to write from them.

    Runs in a worker process, so it pickles and carries everything the work needs.
    """

    key: str  # <split>/<city>/<name without the _polygons.json or _instanceIds.png suffix>
    polygons: Location | None
    instance_ids: Location | None
    instance_ids_name: str | None
    outputs: tuple[tuple[Kind, str], ...]  # (kind, path)
    compress_level: int | None
    # The panoptic kinds whose split JSON wants this frame's entries back: those of the
    # run, or (--resume) only those whose JSON is still to be written.
    json_kinds: tuple[Kind, ...] = ()
    max_pixels: int = DEFAULT_MAX_PIXELS  # the most pixels an input may claim (png.set_max_pixels)
    # For URLs, as --storage_options: a worker process configures its storage with them.
    storage_options: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class SplitJson:
    """One split's panoptic JSON, made from its frames' entries in path order."""

    split: str
    kind: Kind
    path: str
    frame_keys: tuple[str, ...]

    @property
    def inputs(self) -> str:
        """A fingerprint of the frame list: a JSON recorded with another list is not this one."""
        return hashlib.sha256("\n".join(self.frame_keys).encode()).hexdigest()


@dataclass
class Plan:
    frames: list[FrameTask] = field(default_factory=list)
    jsons: list[SplitJson] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split (gtCoarse/<split>) -> kind -> files

    @property
    def directories(self) -> set[str]:
        """The local folders the files go to (a bucket has none to make)."""
        return {os.path.dirname(path) for path in self.paths() if not storage.is_url(path)}

    def paths(self) -> list[str]:
        return [path for task in self.frames for _, path in task.outputs] + [j.path for j in self.jsons]


class MissingInputWarning(UserWarning):
    pass


def make_plan(
    trees: list[GtFine], layout: Layout, kinds, splits: list[str] | None, compress_level: int | None,
    max_pixels: int = DEFAULT_MAX_PIXELS, storage_options: dict | None = None,
) -> Plan:
    """Every output of `kinds` for `splits` of each annotation tree (default: every split of
    its set that the tree holds: train, val, test for gtFine; train, val, train_extra for
    gtCoarse). Panoptic kinds are made from gtFine alone, as cityscapesscripts makes them.

    A named split without the files a kind is made from is an error (with several trees,
    a tree that lacks the split is passed over while another holds it); by default such a
    split only warns (the test split of a custom tree may lack instanceIds).
    """
    plan = Plan()
    for tree in trees:
        if splits is None:
            tree_splits = [split for split in tree.annotations.splits if tree.has_split(split)]
        else:
            tree_splits = [split for split in splits if tree.has_split(split)
                           or not any(other.has_split(split) for other in trees)]
        _plan_tree(plan, tree, tree_splits, splits is not None, layout, kinds, compress_level, max_pixels,
                   dict(storage_options or {}))
    if not plan.frames:
        polygon_kinds = [kind for kind in kinds if kind.from_polygons]
        patterns = [pattern for wanted, pattern in ((polygon_kinds, POLYGONS_PATTERN),
                                                    (len(polygon_kinds) < len(kinds), INSTANCE_IDS_PATTERN)) if wanted]
        raise InputError(trees[0].base, f"no split holds {' or '.join(patterns)} files")
    return plan


def _plan_tree(plan: Plan, tree: GtFine, splits: list[str], named: bool, layout: Layout, kinds,
               compress_level: int | None, max_pixels: int, storage_options: dict) -> None:
    folder = tree.annotations.folder
    polygon_kinds = [kind for kind in kinds if kind.from_polygons]
    panoptic_kinds = [kind for kind in kinds if not kind.from_polygons] if tree.annotations is FINE else []
    for split in splits:
        polygons, instance_ids = {}, {}
        for location, city, name in tree.files(split):
            if is_polygons_file(name):
                polygons[f"{split}/{city}/{name[: -len(POLYGONS_SUFFIX)]}"] = (location, city, name)
            elif is_instance_ids_file(name):
                instance_ids[f"{split}/{city}/{name[: -len(INSTANCE_IDS_SUFFIX)]}"] = (location, city, name)
        for wanted, found, pattern in ((polygon_kinds, polygons, POLYGONS_PATTERN),
                                       (panoptic_kinds, instance_ids, INSTANCE_IDS_PATTERN)):
            if wanted and not found:
                where = tree.base.join(split)
                if named:
                    raise InputError(where, f"no {pattern} files for split {split!r}")
                warnings.warn(f"{where}: no {pattern} files, so no {', '.join(k.value for k in wanted)} "
                              f"files for split {split!r}", MissingInputWarning, stacklevel=3)
        counts = {}
        for key in sorted(polygons.keys() | instance_ids.keys()):
            outputs = []
            if key in polygons and polygon_kinds:
                location, city, name = polygons[key]
                outputs += [(kind, layout.label_file(folder, split, city, name, kind)) for kind in polygon_kinds]
            instance = instance_ids.get(key) if panoptic_kinds else None
            if instance is not None:
                outputs += [(kind, layout.panoptic_file(split, kind, instance[2])) for kind in panoptic_kinds]
            if not outputs:
                continue
            for kind, _ in outputs:
                counts[kind.value] = counts.get(kind.value, 0) + 1
            plan.frames.append(FrameTask(
                key=key,
                polygons=polygons[key][0] if key in polygons and polygon_kinds else None,
                instance_ids=instance[0] if instance else None,
                instance_ids_name=instance[2] if instance else None,
                outputs=tuple(outputs),
                compress_level=compress_level,
                json_kinds=tuple(panoptic_kinds) if instance is not None else (),
                max_pixels=max_pixels,
                storage_options=storage_options,
            ))
        if instance_ids and panoptic_kinds:
            keys = tuple(instance_ids)  # in path order, as listed
            plan.jsons += [SplitJson(split, kind, layout.panoptic_json(split, kind), keys) for kind in panoptic_kinds]
            counts["json"] = len(panoptic_kinds)
        if counts:
            # gtFine's splits by their names, as before coarse annotations; gtCoarse's apart.
            plan.counts[split if tree.annotations is FINE else f"{folder}/{split}"] = counts
