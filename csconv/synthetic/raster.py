"""A small numpy polygon rasterizer and the Cityscapes id rules for drawing label PNGs.

Deliberately not Pillow's ImageDraw: the real gtFine PNGs came from other software, so a
Pillow re-draw of the polygons must disagree with them along some edges, just as it does
with the real dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from csconv.core.labels import BY_NAME, LABEL_DIVISOR, label_for_polygon

_EPS = 1e-6


def rasterize_polygon(points: Sequence[Sequence[float]], width: int, height: int):
    """Pixels covered by the polygon under the even-odd rule, boundary included.

    Pixel (x, y) is the point (x, y). Each row is sampled just above and just below its
    centre line and the inclusive spans of both are merged, so horizontal edges and
    pixel centres on an edge count as inside, like most polygon fillers; diagonal
    edges are rounded inwards (Pillow also draws the outline, so it differs there).
    Returns (y0, x0, mask) with mask covering rows y0.. and columns x0.., or None when no
    pixel is covered.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return None
    xs, ys = pts[:, 0], pts[:, 1]
    y0 = max(0, int(np.ceil(ys.min())))
    y1 = min(height - 1, int(np.floor(ys.max())))
    x0 = max(0, int(np.ceil(xs.min())))
    x1 = min(width - 1, int(np.floor(xs.max())))
    if y0 > y1 or x0 > x1:
        return None
    xb, yb = np.roll(xs, -1), np.roll(ys, -1)
    n_rows, bw = y1 - y0 + 1, x1 - x0 + 1
    centre = np.arange(y0, y1 + 1, dtype=np.float64)[:, None]
    cover = np.zeros((n_rows, bw + 1), dtype=np.int64)
    for offset in (-_EPS, _EPS):
        rows = centre + offset  # never equal to an integer vertex y: no tie cases
        ri, ei = np.nonzero((ys < rows) != (yb < rows))
        if ri.size == 0:
            continue
        t = (rows[ri, 0] - ys[ei]) / (yb[ei] - ys[ei])
        xint = xs[ei] + t * (xb[ei] - xs[ei])
        order = np.lexsort((xint, ri))
        ri, xint = ri[order], xint[order]
        # Sorted crossings of a row pair up into inside spans (even-odd rule).
        row, left, right = ri[0::2], xint[0::2], xint[1::2]
        start = np.clip(np.ceil(left - _EPS) - x0, 0, bw).astype(np.int64)
        stop = np.clip(np.floor(right + _EPS) - x0 + 1, 0, bw).astype(np.int64)
        keep = stop > start
        row, start, stop = row[keep], start[keep], stop[keep]
        size = n_rows * (bw + 1)
        cover += (np.bincount(row * (bw + 1) + start, minlength=size)
                  - np.bincount(row * (bw + 1) + stop, minlength=size)).reshape(n_rows, bw + 1)
    mask = np.cumsum(cover, axis=1)[:, :bw] > 0
    if not mask.any():
        return None
    return y0, x0, mask


def object_values(objects: Iterable[Mapping]) -> list[tuple[Mapping, int]]:
    """(object, instanceIds value) for each object that gets drawn, in drawing order.

    Same rules as the Cityscapes tools: deleted objects are skipped and do not count,
    '<name>group' of an unknown name is a crowd of <name> (plain label id), negative ids
    are not drawn (but still count), things are numbered id*1000+k per label.
    """
    counts: dict[str, int] = {}
    out = []
    for obj in objects:
        if obj.get("deleted"):
            continue
        name = obj["label"]
        label = label_for_polygon(name)
        if label is None:
            raise ValueError(f"unknown label {name!r}")
        is_group = name not in BY_NAME
        value = label.id
        if label.has_instances and not is_group:
            k = counts.get(label.name, 0)
            counts[label.name] = k + 1
            value = label.id * LABEL_DIVISOR + k
        if value < 0:
            continue
        out.append((obj, value))
    return out


def render_labels(objects: Iterable[Mapping], width: int, height: int):
    """(labelIds uint8, instanceIds uint16) arrays for a list of Cityscapes polygon objects."""
    inst = np.zeros((height, width), dtype=np.uint16)
    for obj, value in object_values(objects):
        hit = rasterize_polygon(obj["polygon"], width, height)
        if hit is None:
            continue
        y0, x0, mask = hit
        h, w = mask.shape
        inst[y0:y0 + h, x0:x0 + w][mask] = value
    return instance_to_label_ids(inst), inst


def instance_to_label_ids(inst: np.ndarray) -> np.ndarray:
    return np.where(inst < LABEL_DIVISOR, inst, inst // LABEL_DIVISOR).astype(np.uint8)
