"""per split, each class's share of the pixels and its instance count.

Shares are of all label pixels of the split (ignored pixels included, shown as 'ignore').
Instances (panoptic labels only) are the distinct instance ids > 0 of a class in a frame,
summed over the frames. `--plot` draws the shares as a bar chart with Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.labels import IGNORE_LABEL, NUM_TRAIN_CLASSES, train_id_palette
from .preview import TRAIN_NAMES, _font, iter_split, label_divisor, label_maps
from ..pipeline.manifest import load as load_manifest

CLASSES = list(range(NUM_TRAIN_CLASSES)) + [IGNORE_LABEL]


def class_name(train_id: int) -> str:
    return TRAIN_NAMES.get(train_id, "ignore")


@dataclass
class SplitStats:
    split: str
    frames: int = 0
    labelled: int = 0
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))  # per trainId
    instances: np.ndarray | None = None  # per trainId; None when no label is panoptic

    @property
    def total(self) -> int:
        return int(self.pixels.sum())

    def share(self, train_id: int) -> float:
        return 100.0 * self.pixels[train_id] / self.total if self.total else 0.0


def frame_instances(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Per trainId, the number of distinct instance ids > 0 in one frame."""
    things = instance > 0
    pairs = np.unique(semantic[things].astype(np.int64) * (1 << 32) + instance[things])
    return np.bincount(pairs >> 32, minlength=256)[:256]


def compute_stats(output_dir: str, splits: list[str] | None = None) -> list[SplitStats]:
    manifest = load_manifest(output_dir)
    divisor = label_divisor(manifest)
    result = []
    for split in splits or list(manifest.get("splits", {})):
        stats = SplitStats(split)
        for sample in iter_split(output_dir, split, manifest):
            stats.frames += 1
            semantic, instance = label_maps(sample, divisor)
            if semantic is None:
                continue
            stats.labelled += 1
            stats.pixels += np.bincount(semantic.reshape(-1), minlength=256)
            if instance is not None:
                if stats.instances is None:
                    stats.instances = np.zeros(256, dtype=np.int64)
                stats.instances += frame_instances(semantic, instance)
        result.append(stats)
    return result


def format_table(all_stats: list[SplitStats]) -> str:
    lines = []
    for stats in all_stats:
        lines.append(f"{stats.split}: {stats.frames} frames, {stats.labelled} labelled, {stats.total} label pixels")
        if not stats.labelled:
            lines.append("  (no labels)")
            continue
        lines.append(f"  {'class':<14} {'trainId':>7} {'pixels %':>9} {'instances':>9}")
        for train_id in CLASSES:
            instances = "-" if stats.instances is None or train_id == IGNORE_LABEL else str(int(stats.instances[train_id]))
            lines.append(f"  {class_name(train_id):<14} {train_id:>7} {stats.share(train_id):>9.3f} {instances:>9}")
    return "\n".join(lines)


# --- the bar chart ----------------------------------------------------------------------

CHART_WIDTH = 720
ROW_H = 16
TITLE_H = 22
NAME_W = 110
VALUE_W = 70
MARGIN = 8
CHART_BG = (255, 255, 255)
INK = (20, 20, 20)


def chart_size(all_stats: list[SplitStats]) -> tuple[int, int]:
    rows = sum(len(CLASSES) if s.labelled else 1 for s in all_stats)
    return CHART_WIDTH, MARGIN + len(all_stats) * (TITLE_H + MARGIN) + rows * ROW_H


def bar_geometry(all_stats: list[SplitStats]):
    """(split, trainId, share, (x0, y0, x1, y1)) of every bar; x1 < x0 for an empty bar."""
    bar_room = CHART_WIDTH - 2 * MARGIN - NAME_W - VALUE_W
    y = MARGIN
    bars = []
    for stats in all_stats:
        y += TITLE_H
        if not stats.labelled:
            y += ROW_H + MARGIN
            continue
        largest = max(stats.share(t) for t in CLASSES) or 1.0
        for train_id in CLASSES:
            share = stats.share(train_id)
            x0 = MARGIN + NAME_W
            x1 = x0 + int(round(bar_room * share / largest)) - 1
            bars.append((stats.split, train_id, share, (x0, y + 2, x1, y + ROW_H - 3)))
            y += ROW_H
        y += MARGIN
    return bars


def plot(all_stats: list[SplitStats], path: str):
    """Horizontal bars per split, one per class in its palette colour, with name and share."""
    from PIL import Image, ImageDraw

    palette = train_id_palette()
    canvas = Image.new("RGB", chart_size(all_stats), CHART_BG)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    y = MARGIN
    bars = iter(bar_geometry(all_stats))
    for stats in all_stats:
        draw.text((MARGIN, y + 4), f"{stats.split}: pixel share per class (%), {stats.labelled} labelled frames", fill=INK, font=font)
        y += TITLE_H
        if not stats.labelled:
            draw.text((MARGIN + NAME_W, y), "no labels", fill=INK, font=font)
            y += ROW_H + MARGIN
            continue
        for train_id in CLASSES:
            _, _, share, (x0, y0, x1, y1) = next(bars)
            draw.text((MARGIN, y + 1), class_name(train_id), fill=INK, font=font)
            if x1 >= x0:
                draw.rectangle([x0, y0, x1, y1], fill=tuple(int(c) for c in palette[train_id]))
            draw.text((max(x0, x1) + 4, y + 1), f"{share:.2f}", fill=INK, font=font)
            y += ROW_H
        y += MARGIN
    canvas.save(path, format="PNG")
    return canvas
