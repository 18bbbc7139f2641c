"""Random but deterministic street-scene layouts as Cityscapes polygon objects.

Everything is laid out in pixel units of the requested frame, so layouts scale with the
frame size; small features get a minimum size of 2 px so they survive at 64x32.
"""

from __future__ import annotations

import math

import numpy as np

FULL_AREA = 2048 * 1024
# Hand-traced outlines: a vertex every _TRACE_STEP px (at full size), _TRACE_JITTER px
# off the edge (standard deviation); tiny test frames keep their plain shapes.
_TRACE_STEP, _TRACE_JITTER, _TRACE_MIN_SCALE = 26.0, 1.5, 0.25

# Relative outlines (x in [-0.5, 0.5] of width, y in [-1, 0] of height, 0 = ground).
_SHAPES = {
    "car": [(-0.5, 0), (-0.5, -0.42), (-0.4, -0.55), (-0.28, -0.95), (0.26, -0.97),
            (0.4, -0.56), (0.5, -0.45), (0.5, 0), (0.3, 0.02), (-0.3, 0.02)],
    "truck": [(-0.5, 0), (-0.5, -1), (0.2, -1), (0.22, -0.7), (0.45, -0.66), (0.5, -0.3),
              (0.5, 0)],
    "bus": [(-0.5, 0), (-0.49, -0.95), (-0.45, -1), (0.45, -1), (0.5, -0.93), (0.5, 0)],
    "train": [(-0.5, 0), (-0.5, -0.9), (-0.42, -1), (0.42, -1), (0.5, -0.9), (0.5, 0)],
    "caravan": [(-0.5, 0), (-0.5, -0.9), (-0.4, -1), (0.45, -1), (0.5, -0.85), (0.5, 0)],
    "trailer": [(-0.5, 0), (-0.5, -1), (0.5, -1), (0.5, -0.2), (0.35, 0), (-0.35, 0)],
    "person": [(-0.3, 0), (-0.12, -0.45), (-0.3, -0.5), (-0.28, -0.8), (-0.1, -0.86),
               (-0.12, -0.97), (0.0, -1), (0.12, -0.97), (0.1, -0.86), (0.28, -0.8),
               (0.3, -0.5), (0.12, -0.45), (0.3, 0), (0.1, 0), (0.0, -0.4), (-0.1, 0)],
    "rider": [(-0.35, -0.35), (-0.3, -0.75), (-0.1, -0.85), (-0.1, -0.97), (0.05, -1),
              (0.15, -0.9), (0.25, -0.75), (0.35, -0.4), (0.1, -0.45), (0.05, 0),
              (-0.1, 0)],
    "bicycle": [(-0.5, -0.3), (-0.35, -0.6), (-0.1, -0.62), (0.0, -1), (0.15, -0.95),
                (0.35, -0.6), (0.5, -0.3), (0.35, 0), (0.1, -0.2), (-0.1, -0.2),
                (-0.35, 0)],
    "motorcycle": [(-0.5, -0.25), (-0.4, -0.7), (-0.1, -0.75), (0.1, -1), (0.3, -0.9),
                   (0.45, -0.6), (0.5, -0.25), (0.3, 0), (-0.3, 0)],
}

# Physical widths/heights in metres so relative sizes look plausible.
_SIZES = {
    "car": (1.8, 1.5), "truck": (2.5, 3.4), "bus": (2.6, 3.2), "train": (9.0, 3.8),
    "caravan": (2.3, 2.7), "trailer": (2.5, 1.6), "person": (0.6, 1.75),
    "rider": (0.6, 1.5), "bicycle": (1.7, 1.0), "motorcycle": (2.0, 1.15),
    "persongroup": (3.0, 1.75), "cargroup": (8.0, 1.5), "bicyclegroup": (4.0, 1.0),
    "ridergroup": (3.0, 1.8),
}


class Layout:
    def __init__(self, rng: np.random.Generator, width: int, height: int):
        self.rng = rng
        self.w = width
        self.h = height
        self.scale = min(1.0, math.sqrt(width * height / FULL_AREA))
        self.min_px = 2.0
        self.horizon = height * rng.uniform(0.44, 0.5)
        self.vx = width * rng.uniform(0.46, 0.54)
        self.objects: list[dict] = []

    # -- helpers -------------------------------------------------------------------
    def count(self, full: int) -> int:
        """How many of a kind at this frame size: `full` at 2048x1024, never below 1."""
        return max(1, int(round(full * self.scale)))

    def add(self, label: str, pts, deleted: bool = False) -> dict:
        poly = [[int(round(x)), int(round(y))] for x, y in self.hand_traced(pts)]
        obj = {"label": label, "polygon": poly}
        if deleted:
            obj["deleted"] = 1
        self.objects.append(obj)
        return obj

    def hand_traced(self, pts):
        """The outline as an annotator clicks it: a vertex every few pixels, each a
        pixel or so off the ideal edge. Real polygons hold 1,100-3,100 vertices per
        frame and their label maps ragged edges; clean 10-vertex shapes would make
        label PNGs that decode faster than real ones."""
        pts = [(float(x), float(y)) for x, y in pts]
        out = []
        for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
            out.append((x0, y0))
            length = math.hypot(x1 - x0, y1 - y0)
            steps = int(length // (_TRACE_STEP * self.scale)) if self.scale >= _TRACE_MIN_SCALE else 0
            if steps < 2:
                continue
            nx, ny = -(y1 - y0) / length, (x1 - x0) / length
            offsets = self.rng.normal(0.0, _TRACE_JITTER, steps - 1)
            for k, offset in enumerate(offsets, start=1):
                t = k / steps
                out.append((x0 + t * (x1 - x0) + offset * nx, y0 + t * (y1 - y0) + offset * ny))
        return out

    def box(self, cx, cy, w, h):
        w, h = max(w, self.min_px), max(h, self.min_px)
        return [(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2),
                (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)]

    def blob(self, cx, cy, rx, ry, n=18, jitter=0.2):
        rx, ry = max(rx, self.min_px), max(ry, self.min_px)
        a = np.linspace(0, 2 * np.pi, n, endpoint=False) + self.rng.uniform(0, 0.3)
        r = 1 + self.rng.uniform(-jitter, jitter, n)
        return list(zip(cx + rx * r * np.cos(a), cy + ry * r * np.sin(a)))

    def jitter(self, pts, amount):
        d = self.rng.uniform(-amount, amount, (len(pts), 2))
        return [(x + dx, y + dy) for (x, y), (dx, dy) in zip(pts, d)]

    def ground_y(self, depth):
        # depth 1 = just in front of the ego vehicle's bonnet, 0 = horizon.
        return self.horizon + depth * (0.8 * self.h - self.horizon)

    def px_per_m(self, depth):
        # Flat ground, camera ~1.3 m up: image size scales with distance below the horizon.
        return (self.ground_y(depth) - self.horizon) / 1.3

    def side_x(self):
        """An x on the left or right side, clear of the unlabelled gap in the middle."""
        if self.rng.random() < 0.5:
            return self.w * self.rng.uniform(0.02, 0.3)
        return self.w * self.rng.uniform(0.7, 0.98)

    # -- scene parts -----------------------------------------------------------------
    def background(self):
        w, h, hz, vx, rng = self.w, self.h, self.horizon, self.vx, self.rng
        # Sky with a notch from the top that nothing else covers: real frames always
        # keep some 'unlabeled' (0) pixels.
        gx0, gx1, gy = 0.44 * w, 0.56 * w, max(0.16 * h, 3)
        self.add("sky", [(-2, -2), (gx0, -2), (gx0, gy), (gx1, gy), (gx1, -2),
                         (w + 1, -2), (w + 1, hz + 0.02 * h), (-2, hz + 0.02 * h)])
        for left in (True, False):
            xs = np.sort(rng.uniform(0.0, 1.0, rng.integers(2, 6)))
            x_in, x_out = (0.3 * w, -2) if left else (0.7 * w, w + 1)
            pts = [(x_out, hz + 0.05 * h), (x_out, h * rng.uniform(0.03, 0.2))]
            prev = x_out
            for f in xs:
                x = x_out + (x_in - x_out) * f
                top = h * rng.uniform(0.03, 0.3)
                pts += [(x, pts[-1][1]), (x, top)] if x != prev else []
                prev = x
            pts += [(x_in, pts[-1][1]), (x_in, hz + 0.05 * h)]
            self.add("building", pts)
        top = h * rng.uniform(0.22, 0.28)
        self.add("building", [(0.36 * w, hz + 0.01 * h), (0.36 * w, top + 0.04 * h),
                              (0.5 * w, top), (0.64 * w, top + 0.03 * h),
                              (0.64 * w, hz + 0.01 * h)])
        by = hz - 0.14 * h
        self.add("bridge", self.jitter([(0.3 * w, by), (0.7 * w, by - 0.01 * h),
                                        (0.7 * w, by + 0.05 * h), (0.3 * w, by + 0.06 * h)],
                                       0.003 * w))
        tw = max(0.04 * w, 2)
        arch = [(vx - tw, hz + 0.01 * h)]
        arch += [(vx - tw * math.cos(a), hz - 0.03 * h - 0.03 * h * math.sin(a))
                 for a in np.linspace(0, math.pi, 9)]
        arch.append((vx + tw, hz + 0.01 * h))
        self.add("tunnel", arch)
        for _ in range(self.count(3)):
            x = self.w * (rng.uniform(0.05, 0.3) if rng.random() < 0.5 else rng.uniform(0.7, 0.95))
            r = w * rng.uniform(0.04, 0.09)
            self.add("vegetation", self.blob(x, h * rng.uniform(0.2, 0.38), r, r * 0.9, n=22))
        self.add("road", [(-2, 0.8 * h), (vx - 0.03 * w, hz), (vx + 0.03 * w, hz),
                          (w + 1, 0.8 * h), (w + 1, h + 1), (-2, h + 1)])
        self.add("sidewalk", [(-2, hz + 0.05 * h), (vx - 0.035 * w, hz),
                              (vx - 0.025 * w, hz), (-2, 0.78 * h)])
        self.add("sidewalk", [(w + 1, hz + 0.05 * h), (vx + 0.035 * w, hz),
                              (vx + 0.025 * w, hz), (w + 1, 0.78 * h)])
        self.add("terrain", self.jitter([(-2, hz - 0.01 * h), (0.3 * w, hz - 0.005 * h),
                                         (0.3 * w, hz + 0.012 * h), (-2, hz + 0.06 * h)], 2))
        self.add("ground", self.jitter([(w + 1, hz - 0.01 * h), (0.7 * w, hz - 0.005 * h),
                                        (0.7 * w, hz + 0.012 * h), (w + 1, hz + 0.06 * h)], 2))
        self.add("parking", [(0.82 * w, 0.6 * h), (0.97 * w, 0.6 * h), (w + 1, 0.7 * h),
                             (0.87 * w, 0.7 * h)])
        self.add("rail track", [(vx - 0.004 * w, hz + 0.01 * h), (vx + 0.004 * w, hz + 0.01 * h),
                                (0.56 * w, h + 1), (0.5 * w, h + 1)])
        self.add("wall", [(0.2 * w, hz - 0.08 * h), (0.36 * w, hz - 0.04 * h),
                          (0.36 * w, hz + 0.01 * h), (0.2 * w, hz + 0.04 * h)])
        self.add("fence", [(0.64 * w, hz - 0.05 * h), (0.82 * w, hz - 0.09 * h),
                           (0.82 * w, hz + 0.05 * h), (0.64 * w, hz + 0.015 * h)])
        self.add("guard rail", [(0.08 * w, hz + 0.03 * h), (vx - 0.05 * w, hz + 0.004 * h),
                                (vx - 0.05 * w, hz + max(0.012 * h, 2)),
                                (0.08 * w, hz + max(0.05 * h, 4))])
        for _ in range(self.count(3)):
            x = self.side_x()
            top = h * rng.uniform(0.05, 0.25)
            bottom = hz + h * rng.uniform(0.05, 0.2)
            pw = max(0.006 * w, self.min_px)
            self.add("pole", [(x - pw / 2, top), (x + pw / 2, top), (x + pw / 2 + 1, bottom),
                              (x - pw / 2 - 1, bottom)])
            self.add("traffic light", self.box(x + 0.01 * w * rng.choice([-1, 1]),
                                               top + 0.02 * h, 0.012 * w, 0.045 * h))
            self.add("traffic sign", self.box(x, top + 0.12 * h, 0.02 * w, 0.03 * h))
        x = self.side_x()
        self.add("polegroup", [(x - 0.01 * w, 0.15 * h), (x + 0.01 * w, 0.15 * h),
                               (x + 0.012 * w, hz + 0.1 * h), (x - 0.012 * w, hz + 0.1 * h)])

    def thing(self, name, depth, x, plate=False):
        """[(label, pts)] for one thing standing at ground depth, plus its plate if asked."""
        m = self.px_per_m(depth)
        wm, hm = _SIZES[name]
        ow, oh = max(wm * m, 3), max(hm * m, 3)
        yb = self.ground_y(depth)
        if name.endswith("group"):
            n = 14
            xs = np.linspace(-0.5, 0.5, n)
            tops = 1 - 0.25 * self.rng.random(n)
            pts = [(x + ow * a, yb - oh * t) for a, t in zip(xs, tops)]
            pts += [(x + ow / 2, yb), (x - ow / 2, yb)]
        else:
            pts = [(x + ow * a, yb + oh * b) for a, b in _SHAPES[name]]
            pts = self.jitter(pts, 0.02 * ow)
        parts = [(name, pts)]
        if plate:
            parts.append(("license plate", self.box(x, yb - 0.18 * oh, 0.28 * ow, 0.1 * oh)))
        return parts

    def things(self):
        """Things and small void objects, sorted far to near so nearer ones cover."""
        rng = self.rng
        units = []  # (ground y, tie-break, [(label, pts)])

        def depth(lo, hi):
            # Skewed towards the distance, as in real street scenes.
            return lo + (hi - lo) * rng.random() ** 1.6

        def place(name, n, lateral, lo=0.04, hi=0.9, **kw):
            """n objects at lateral offsets (metres) drawn by `lateral()`, kept on screen."""
            for _ in range(n):
                for _ in range(10):
                    d = depth(lo, hi)
                    x = self.vx + lateral() * self.px_per_m(d)
                    if 0 <= x < self.w:
                        break
                units.append((self.ground_y(d), len(units), self.thing(name, d, x, **kw)))

        def lane():
            return rng.choice([-6.0, -2.0, 2.0, 6.0]) + rng.normal(0, 0.3)

        def sidewalk(lo=7.0, hi=11.0):
            return lambda: rng.choice([-1, 1]) * rng.uniform(lo, hi)

        n_cars = int(rng.integers(10, 17)) if self.scale >= 1 else self.count(13)
        for i in range(n_cars):
            place("car", 1, lane, plate=(i == 0 or rng.random() < 0.35))
        place("person", self.count(6), sidewalk())
        place("truck", self.count(1), lambda: rng.choice([-2.0, 2.0]), lo=0.05, hi=0.5)
        place("bus", self.count(1), lambda: rng.choice([-2.0, 2.0]), lo=0.05, hi=0.5)
        place("caravan", self.count(1), lambda: rng.choice([-6.0, 6.0]), lo=0.05, hi=0.6)
        place("trailer", self.count(1), lambda: rng.choice([-6.0, 6.0]), lo=0.05, hi=0.6)
        place("train", self.count(1), lambda: 0.6, lo=0.04, hi=0.15)
        place("bicycle", self.count(2), sidewalk(6.0, 8.0))
        place("motorcycle", self.count(1), sidewalk(5.5, 7.0))
        # Riders sit on a bicycle or motorcycle at the same depth, drawn just after it.
        for _ in range(self.count(2)):
            vehicle = "bicycle" if rng.random() < 0.6 else "motorcycle"
            d = depth(0.05, 0.8)
            x = self.vx + rng.choice([-1, 1]) * rng.uniform(3.5, 5) * self.px_per_m(d)
            x = min(max(x, 0), self.w - 1)
            rider = self.thing("rider", d, x)[0][1]
            lift = 0.45 * self.px_per_m(d)
            rider = [(px, py - lift) for px, py in rider]
            units.append((self.ground_y(d), len(units),
                          self.thing(vehicle, d, x) + [("rider", rider)]))
        place("persongroup", self.count(1), sidewalk(8.0, 12.0), lo=0.04, hi=0.3)
        place("ridergroup", self.count(1), sidewalk(4.0, 6.0), lo=0.04, hi=0.3)
        place("bicyclegroup", self.count(1), sidewalk(7.0, 10.0), lo=0.04, hi=0.3)
        place("cargroup", self.count(1), lane, lo=0.03, hi=0.12)
        for label in ("static", "dynamic"):
            d = depth(0.1, 0.6)
            m = self.px_per_m(d)
            x = self.vx + rng.choice([-1, 1]) * rng.uniform(7, 10) * m
            x = min(max(x, 0), self.w - 1)
            yb = self.ground_y(d)
            pts = self.blob(x, yb - 0.5 * m, 0.4 * m, 0.5 * m, n=10)
            units.append((yb, len(units), [(label, pts)]))
        units.sort(key=lambda u: (u[0], u[1]))
        for _, _, parts in units:
            for label, pts in parts:
                self.add(label, pts)

    def many(self, n: int, label: str):
        """n small, non-overlapping instances of one label on a grid, all visible."""
        x0, x1 = 0.05 * self.w, 0.95 * self.w
        y0, y1 = 0.1 * self.h, 0.78 * self.h
        cols = max(1, int(math.ceil(math.sqrt(n * (x1 - x0) / (y1 - y0)))))
        rows = int(math.ceil(n / cols))
        cw, ch = (x1 - x0) / cols, (y1 - y0) / rows
        xs = np.floor(x0 + cw * np.arange(cols + 1)).astype(int)
        ys = np.floor(y0 + ch * np.arange(rows + 1)).astype(int)
        if np.any(np.diff(xs) < 1) or np.any(np.diff(ys) < 1):
            raise ValueError(f"a {self.w}x{self.h} frame is too small for {n} instances")
        for i in range(n):
            r, c = divmod(i, cols)
            # Half-open cells: adjacent rectangles tile without sharing a pixel.
            self.add(label, [(xs[c], ys[r]), (xs[c + 1], ys[r]), (xs[c + 1], ys[r + 1]),
                             (xs[c], ys[r + 1])])

    def deleted(self):
        w, h = self.w, self.h
        # Placed where they would show if a reader forgot to skip them.
        self.add("car", self.thing("car", 0.7, self.vx)[0][1], deleted=True)
        self.add("building", self.box(0.5 * w, 0.7 * h, 0.1 * w, 0.06 * h), deleted=True)

    def void(self):
        w, h, rng = self.w, self.h, self.rng
        xs = np.linspace(-2, w + 1, 13)
        top = 0.84 * h + 0.04 * h * ((xs - w / 2) / (w / 2)) ** 2 + rng.uniform(-0.005, 0.005, 13) * h
        self.add("ego vehicle", list(zip(xs, top)) + [(w + 1, h + 1), (-2, h + 1)])
        bw = max(0.006 * w, 1.5)
        self.add("rectification border", [(-2, -2), (bw, -2), (bw * 0.5, 0.5 * h),
                                          (bw * 1.3, h + 1), (-2, h + 1)])
        self.add("rectification border", [(w + 1, -2), (w - 1 - bw, -2),
                                          (w - 1 - bw * 0.6, 0.5 * h),
                                          (w - 1 - bw * 1.2, h + 1), (w + 1, h + 1)])
        bh = max(0.025 * h, 1.5)
        self.add("out of roi", [(-2, -2), (w + 1, -2), (w + 1, bh), (0.6 * w, bh * 0.6),
                                (0.3 * w, bh * 0.8), (-2, bh * 1.2)])


def labelled_scene(rng, width, height, many_instances=0, many_label="car", things=True) -> list[dict]:
    lay = Layout(rng, width, height)
    lay.background()
    if things:
        lay.things()
    if many_instances:
        lay.many(many_instances, many_label)
    lay.deleted()
    lay.void()
    return lay.objects


def placeholder_scene(rng, width, height) -> list[dict]:
    """Test split: like the real test set, only the void border regions are labelled."""
    lay = Layout(rng, width, height)
    lay.void()
    return lay.objects


# Coarse annotators skip regions, voids most of all, and outline what they keep with a
# few clicks well inside its edges, so boundaries stay unlabelled.
_COARSE_KEEP = {"stuff": 0.85, "thing": 0.6, "void": 0.3}
_COARSE_VERTICES = (4, 8)  # fewest and most clicks per polygon
_COARSE_SHRINK = (0.6, 0.9)  # of the distance from the polygon's centre to its vertices


def coarse_scene(rng, fine_objects, width, height) -> list[dict]:
    """A coarse annotation of the frame `fine_objects` describe, as gtCoarse has them.

    Fewer objects than the fine annotation, in the same order (nearer things still
    cover farther stuff), each a polygon of 4-7 vertices picked from its fine outline,
    pulled towards its centre and kept inside the frame. Deleted objects stay deleted,
    so readers must skip them here too.
    """
    from csconv.core.labels import label_for_polygon

    objects = []
    for obj in fine_objects:
        label = label_for_polygon(obj["label"])
        kind = "void" if label is None or label.category == "void" else "thing" if label.has_instances else "stuff"
        if rng.random() >= _COARSE_KEEP[kind]:
            continue
        outline = np.asarray(obj["polygon"], dtype=np.float64)
        count = min(len(outline), int(rng.integers(*_COARSE_VERTICES)))
        picked = outline[np.linspace(0, len(outline), count, endpoint=False).astype(int)]
        centre = picked.mean(axis=0)
        picked = centre + (picked - centre) * rng.uniform(*_COARSE_SHRINK)
        picked = np.clip(np.rint(picked), 0, [width - 1, height - 1]).astype(int)
        coarse = {"label": obj["label"], "polygon": picked.tolist()}
        if obj.get("deleted"):
            coarse["deleted"] = 1
        objects.append(coarse)
    return objects
