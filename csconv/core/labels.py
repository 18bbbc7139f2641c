"""The Cityscapes label table, kept as plain facts so the core needs no cityscapesscripts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_LABEL = 255
LABEL_DIVISOR = 1000


@dataclass(frozen=True)
class Label:
    name: str
    id: int
    train_id: int
    category: str
    has_instances: bool
    ignore_in_eval: bool
    color: tuple[int, int, int]

    @property
    def is_thing(self) -> bool:
        """A class DeepLab2 numbers instances of: has instances and counts in evaluation."""
        return self.has_instances and not self.ignore_in_eval


def _table() -> tuple[Label, ...]:
    # name, id, trainId, category, hasInstances, ignoreInEval, colour
    rows = [
        ("unlabeled", 0, 255, "void", False, True, (0, 0, 0)),
        ("ego vehicle", 1, 255, "void", False, True, (0, 0, 0)),
        ("rectification border", 2, 255, "void", False, True, (0, 0, 0)),
        ("out of roi", 3, 255, "void", False, True, (0, 0, 0)),
        ("static", 4, 255, "void", False, True, (0, 0, 0)),
        ("dynamic", 5, 255, "void", False, True, (111, 74, 0)),
        ("ground", 6, 255, "void", False, True, (81, 0, 81)),
        ("road", 7, 0, "flat", False, False, (128, 64, 128)),
        ("sidewalk", 8, 1, "flat", False, False, (244, 35, 232)),
        ("parking", 9, 255, "flat", False, True, (250, 170, 160)),
        ("rail track", 10, 255, "flat", False, True, (230, 150, 140)),
        ("building", 11, 2, "construction", False, False, (70, 70, 70)),
        ("wall", 12, 3, "construction", False, False, (102, 102, 156)),
        ("fence", 13, 4, "construction", False, False, (190, 153, 153)),
        ("guard rail", 14, 255, "construction", False, True, (180, 165, 180)),
        ("bridge", 15, 255, "construction", False, True, (150, 100, 100)),
        ("tunnel", 16, 255, "construction", False, True, (150, 120, 90)),
        ("pole", 17, 5, "object", False, False, (153, 153, 153)),
        ("polegroup", 18, 255, "object", False, True, (153, 153, 153)),
        ("traffic light", 19, 6, "object", False, False, (250, 170, 30)),
        ("traffic sign", 20, 7, "object", False, False, (220, 220, 0)),
        ("vegetation", 21, 8, "nature", False, False, (107, 142, 35)),
        ("terrain", 22, 9, "nature", False, False, (152, 251, 152)),
        ("sky", 23, 10, "sky", False, False, (70, 130, 180)),
        ("person", 24, 11, "human", True, False, (220, 20, 60)),
        ("rider", 25, 12, "human", True, False, (255, 0, 0)),
        ("car", 26, 13, "vehicle", True, False, (0, 0, 142)),
        ("truck", 27, 14, "vehicle", True, False, (0, 0, 70)),
        ("bus", 28, 15, "vehicle", True, False, (0, 60, 100)),
        ("caravan", 29, 255, "vehicle", True, True, (0, 0, 90)),
        ("trailer", 30, 255, "vehicle", True, True, (0, 0, 110)),
        ("train", 31, 16, "vehicle", True, False, (0, 80, 100)),
        ("motorcycle", 32, 17, "vehicle", True, False, (0, 0, 230)),
        ("bicycle", 33, 18, "vehicle", True, False, (119, 11, 32)),
        ("license plate", -1, -1, "vehicle", False, True, (0, 0, 142)),
    ]
    return tuple(Label(*row) for row in rows)


LABELS: tuple[Label, ...] = _table()
BY_NAME: dict[str, Label] = {label.name: label for label in LABELS}
BY_ID: dict[int, Label] = {label.id: label for label in LABELS}
THING_TRAIN_IDS: frozenset[int] = frozenset(l.train_id for l in LABELS if l.is_thing)
NUM_TRAIN_CLASSES = 19
# The 19 evaluated classes by trainId (several labels share trainId 255, none of 0..18).
BY_TRAIN_ID: dict[int, Label] = {l.train_id: l for l in LABELS if 0 <= l.train_id < NUM_TRAIN_CLASSES}


def label_for_polygon(name: str) -> Label | None:
    """The label a polygon's name stands for, as csCreateTrainIdLabelImgs resolves it.

    An unknown name ending in 'group' (e.g. 'cargroup') means its base class. Returns
    None for an unknown name.
    """
    if name not in BY_NAME and name.endswith("group"):
        name = name[: -len("group")]
    return BY_NAME.get(name)


def train_id_palette() -> np.ndarray:
    """RGB colour per trainId (0..255), black for ignored ids."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for train_id, label in BY_TRAIN_ID.items():
        palette[train_id] = label.color
    return palette
