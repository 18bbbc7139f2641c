"""Write a synthetic Cityscapes tree (leftImg8bit, gtFine, gtCoarse) laid out like the real download."""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from csconv.core.labels import BY_NAME, LABEL_DIVISOR, LABELS
from csconv.synthetic.raster import render_labels
from csconv.synthetic.scene import coarse_scene, labelled_scene, placeholder_scene

DEFAULT_CITIES: dict[str, list[str]] = {
    "train": ["aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt",
              "hamburg", "hanover", "jena", "krefeld", "monchengladbach", "strasbourg",
              "stuttgart", "tubingen", "ulm", "weimar", "zurich"],
    "val": ["frankfurt", "lindau", "munster"],
    "test": ["berlin", "bielefeld", "bonn", "leverkusen", "mainz", "munich"],
    # The coarse-only extra training split; two real city names hold a hyphen.
    "train_extra": ["augsburg", "bad-honnef", "bamberg", "bayreuth", "dortmund", "dresden", "duisburg",
                    "erlangen", "freiburg", "heidelberg", "heilbronn", "karlsruhe", "konigswinter",
                    "konstanz", "mannheim", "muhlheim-ruhr", "nuremberg", "oberhausen", "saarbrucken",
                    "schweinfurt", "troisdorf", "wuppertal", "wurzburg"],
}
# The splits gtCoarse holds; train_extra has no other labels.
COARSE_SPLITS = ("train", "train_extra", "val")
COARSE_ONLY_SPLIT = "train_extra"
IMAGE_COMPRESS_LEVEL = 1
LABEL_COMPRESS_LEVEL = 6
# Real frames range from a street without a single object to crowded squares: train
# frame 1 carries over a hundred cars, frame 2 no thing at all.
CROWDED_FRAME, CROWDED_INSTANCES = 1, 120
EMPTY_FRAME = 2
NOISE = 2  # +-NOISE grey levels of per-pixel noise; makes the PNG a realistic 1-3 MB

# What every real leftImg8bit PNG carries besides its pixels, so that csconv meets here
# what it meets in the download: gamma 1/2.2, sRGB perceptual, the sRGB primaries, a
# white background and 72x72 pixels per unknown unit before the pixels; the pixels in
# 32 KiB IDAT chunks; the file's creation and modification times as text after them.
_GAMA = struct.pack(">I", 45455)
_SRGB = b"\0"
_CHRM = struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
_PHYS = struct.pack(">IIB", 72, 72, 0)
_IDAT_SIZE = 32768
# The first real train frame's time stamp; frames follow half a minute apart, as the
# real ones do, so each file's stamps depend only on its split and index.
_FIRST_STAMP = datetime(2015, 12, 2, 13, 50, 29, tzinfo=timezone(timedelta(hours=1)))
_SPLIT_DAYS = {"train": 0, "val": 1, "test": 2, "train_extra": 3}


def frame_rng(seed: int, split: str, index: int) -> np.random.Generator:
    # crc32, not hash(): str hashing is randomised per process.
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def frame_names(split: str, count: int, cities: Sequence[str]) -> list[tuple[str, str]]:
    """(city, '<city>_<seq:06d>_<frame:06d>') with frames dealt round-robin over cities."""
    if not cities:
        raise ValueError(f"no cities for split {split!r}")
    out = []
    for i in range(count):
        city = cities[i % len(cities)]
        out.append((city, f"{city}_{i // len(cities):06d}_000019"))
    return out


def _image_lut() -> np.ndarray:
    """Photo-ish RGB for every instanceIds value: label colour, dulled, shaded per instance."""
    values = np.arange(1 << 16)
    label_ids = np.where(values < LABEL_DIVISOR, values, values // LABEL_DIVISOR)
    colours = np.full((256, 3), 128, dtype=np.int32)
    for label in LABELS:
        if label.id >= 0:
            colours[label.id] = label.color
    colours[0] = (40, 40, 40)
    colours[1] = (30, 30, 35)
    base = colours[np.clip(label_ids, 0, 255)]
    base = base * 0.75 + 30
    shade = ((values % LABEL_DIVISOR) * 37 % 41 - 20)[:, None]
    shade = np.where(values[:, None] >= LABEL_DIVISOR, shade, 0)
    # Room for the gradient (-NOISE) and the noise (+2*NOISE) without wrapping.
    return np.clip(base + shade, NOISE, 255 - 2 * NOISE).astype(np.uint8)


_LUT: np.ndarray | None = None


def render_image(inst: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB uint8 image: per-segment colour, a soft vertical gradient and per-pixel noise."""
    global _LUT
    if _LUT is None:
        _LUT = _image_lut()
    h = inst.shape[0]
    img = _LUT[inst]
    img -= (np.arange(h, dtype=np.uint16) * NOISE // max(h, 1)).astype(np.uint8)[:, None, None]
    # Binomial(2*NOISE, 1/2) from random bits: sensor-like, and deflates a bit better
    # than uniform noise.
    bits = rng.integers(0, 256, size=img.shape, dtype=np.uint8)
    for k in range(2 * NOISE):
        img += (bits >> k) & 1
    return img


def _colour_lut() -> np.ndarray:
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[:, 3] = 255
    for label in LABELS:
        if label.id >= 0:
            lut[label.id, :3] = label.color
    return lut


def _mode_for(image_modes: Mapping | None, index: int, stem: str) -> str:
    if not image_modes:
        return "RGB"
    for key in (stem, f"{stem}_leftImg8bit", index):
        if key in image_modes:
            return image_modes[key]
    return "RGB"


def _to_mode(rgb: np.ndarray, mode: str) -> Image.Image:
    im = Image.fromarray(rgb, "RGB")
    if mode == "RGB":
        return im
    if mode == "P":
        return im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return im.convert(mode)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, data[pos + 8 : pos + 8 + length]
        pos += 12 + length


def _background(bit_depth: int, colour_type: int) -> bytes:
    """bKGD white in the layout the colour type asks for (the first entry for a palette)."""
    if colour_type == 3:
        return b"\0"
    white = struct.pack(">H", (1 << bit_depth) - 1)
    return white * 3 if colour_type in (2, 6) else white


def frame_stamp(split: str, index: int) -> str:
    stamp = _FIRST_STAMP + timedelta(days=_SPLIT_DAYS.get(split, 4), seconds=33 * index)
    return stamp.isoformat()


def like_real_frame(png: bytes, stamp: str) -> bytes:
    """Pillow's PNG with the real frames' chunks around the pixels, in their order.

    Pillow cannot write text after the pixels, nor bKGD before pHYs, so the chunks are
    spliced into its output; what Pillow wrote (a palette, transparency) stays between
    the colour-space chunks, which must precede it, and bKGD, which must follow it.
    """
    chunks = list(_chunks(png))
    kind, header = chunks[0]
    assert kind == b"IHDR"
    own = [_chunk(k, d) for k, d in chunks[1:] if k not in (b"IDAT", b"IEND")]
    pixels = b"".join(d for k, d in chunks if k == b"IDAT")
    return b"".join([
        png[:8], _chunk(b"IHDR", header),
        _chunk(b"gAMA", _GAMA), _chunk(b"sRGB", _SRGB), _chunk(b"cHRM", _CHRM), *own,
        _chunk(b"bKGD", _background(header[8], header[9])), _chunk(b"pHYs", _PHYS),
        *(_chunk(b"IDAT", pixels[i : i + _IDAT_SIZE]) for i in range(0, len(pixels), _IDAT_SIZE)),
        _chunk(b"tEXt", b"date:create\0" + stamp.encode()),
        _chunk(b"tEXt", b"date:modify\0" + stamp.encode()),
        _chunk(b"IEND", b""),
    ])


def write_annotation(root: Path, folder: str, split: str, city: str, stem: str, objects: list[dict],
                     width: int, height: int, *, write_color: bool = False) -> np.ndarray:
    """<folder>/<split>/<city>/<stem>_<folder>_{polygons.json,labelIds.png,instanceIds.png}
    (and _color.png), as the download has them for gtFine and gtCoarse; returns the
    instanceIds array."""
    label_ids, inst = render_labels(objects, width, height)
    gt_dir = root / folder / split / city
    gt_dir.mkdir(parents=True, exist_ok=True)
    gt = gt_dir / f"{stem}_{folder}"
    doc = {"imgHeight": height, "imgWidth": width, "objects": objects}
    Path(f"{gt}_polygons.json").write_text(json.dumps(doc, indent=4) + "\n")
    Image.fromarray(label_ids, "L").save(f"{gt}_labelIds.png",
                                         compress_level=LABEL_COMPRESS_LEVEL)
    Image.fromarray(inst).save(f"{gt}_instanceIds.png", compress_level=LABEL_COMPRESS_LEVEL)
    if write_color:
        Image.fromarray(_colour_lut()[label_ids], "RGBA").save(
            f"{gt}_color.png", compress_level=LABEL_COMPRESS_LEVEL)
    return inst


def write_image(root: Path, split: str, city: str, stem: str, inst: np.ndarray, rng: np.random.Generator,
                *, mode: str = "RGB", stamp: str | None = None) -> Path:
    """leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png, painted from an instanceIds map."""
    img_dir = root / "leftImg8bit" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    out = img_dir / f"{stem}_leftImg8bit.png"
    encoded = io.BytesIO()
    _to_mode(render_image(inst, rng), mode).save(encoded, format="png", compress_level=IMAGE_COMPRESS_LEVEL)
    out.write_bytes(like_real_frame(encoded.getvalue(), stamp or _FIRST_STAMP.isoformat()))
    return out


def write_frame(root: Path, split: str, city: str, stem: str, objects: list[dict],
                width: int, height: int, rng: np.random.Generator, *, mode: str = "RGB",
                write_color: bool = False, stamp: str | None = None) -> Path:
    inst = write_annotation(root, "gtFine", split, city, stem, objects, width, height, write_color=write_color)
    return write_image(root, split, city, stem, inst, rng, mode=mode, stamp=stamp)


def _fitting_instances(width: int, height: int) -> int:
    # The grid of extra instances needs a few pixels per instance; tiny test frames get fewer.
    return max(0, min(CROWDED_INSTANCES, int(0.9 * width) * int(0.68 * height) // 16))


def generate_dataset(root, split_sizes={"train": 3, "val": 2, "test": 2}, *, width=2048,
                     height=1024, seed=0, cities=None, image_modes=None, write_color=False,
                     many_instances=0, many_instances_label="car", coarse=False) -> list[Path]:
    """Write a deterministic synthetic Cityscapes tree under `root`; returns the
    leftImg8bit paths written, sorted.

    split_sizes: frames per split. Splits other than 'test' get full polygon labels in
    gtFine/; 'test' gets placeholder labels (void borders only), like the real test set;
    'train_extra' gets coarse labels only, in gtCoarse/, like the real extra split.
    coarse: also write gtCoarse/ for train and val (fewer, rougher polygons of the same
    scene, see scene.coarse_scene). The gtFine files and images do not depend on it.
    cities: split -> city names (frames dealt round-robin); defaults to real city names.
    image_modes: frame index within a split, or file stem, -> Pillow mode
    ('RGB', 'RGBA', 'L', 'P') for that leftImg8bit PNG.
    many_instances: add this many extra visible instances of `many_instances_label` to
    every labelled frame (e.g. 1200 cars, to overflow the 1000-per-class id space).
    """
    root = Path(root)
    if width < 1 or height < 1:
        raise ValueError("width and height must be positive")
    if many_instances:
        label = BY_NAME.get(many_instances_label)
        if label is None or not label.has_instances:
            raise ValueError(f"{many_instances_label!r} is not a label with instances")
    written = []
    for split, n in split_sizes.items():
        names = frame_names(split, n, (cities or {}).get(split) or DEFAULT_CITIES.get(split)
                            or DEFAULT_CITIES["train"])
        for index, (city, stem) in enumerate(names):
            rng = frame_rng(seed, split, index)
            if split == "test":
                objects = placeholder_scene(rng, width, height)
            else:
                extra, things = many_instances, True
                if split == "train" and index == CROWDED_FRAME and not many_instances:
                    extra = _fitting_instances(width, height)
                elif split == "train" and index == EMPTY_FRAME:
                    things = False
                objects = labelled_scene(rng, width, height, extra, many_instances_label, things)
            mode, stamp = _mode_for(image_modes, index, stem), frame_stamp(split, index)
            if split == COARSE_ONLY_SPLIT:
                # The frame's fine scene paints the image; only its coarse labels are written.
                inst = render_labels(objects, width, height)[1]
                written.append(write_image(root, split, city, stem, inst, rng, mode=mode, stamp=stamp))
            else:
                written.append(write_frame(root, split, city, stem, objects, width, height, rng,
                                           mode=mode, write_color=write_color, stamp=stamp))
            if split == COARSE_ONLY_SPLIT or (coarse and split in COARSE_SPLITS):
                # A generator of its own, so that asking for coarse labels changes no fine byte.
                coarse_objects = coarse_scene(frame_rng(seed, f"{split}/gtCoarse", index), objects, width, height)
                write_annotation(root, "gtCoarse", split, city, stem, coarse_objects, width, height,
                                 write_color=write_color)
    return sorted(written)
