"""one picture of one converted frame, read back from any sink's output.

The picture holds the image and its label coloured with the Cityscapes trainId palette
(ignore = black) side by side or stacked, instance outlines drawn white on the label,
and a legend (swatch + class name) of the classes present below.
"""

from __future__ import annotations

import io
import os

import numpy as np

from .. import storage
from ..core.errors import CsconvError, InputError
from ..core.labels import BY_TRAIN_ID, IGNORE_LABEL, train_id_palette
from ..core.records import Sample
from ..plugins import get_sink
from ..pipeline.manifest import load as load_manifest

TRAIN_NAMES = {train_id: label.name for train_id, label in BY_TRAIN_ID.items()}
OUTLINE = (255, 255, 255)
BACKGROUND = (32, 32, 32)
LEGEND_TEXT = (235, 235, 235)
SWATCH, PAD = 12, 6


# --- reading one output back ----------------------------------------------------------

def split_info(manifest: dict, split: str, output_dir: str) -> dict:
    splits = manifest.get("splits", {})
    if split not in splits:
        raise CsconvError(f"{output_dir}: no split {split!r}; it holds {', '.join(splits) or 'no split'}")
    return splits[split]


def label_divisor(manifest: dict) -> int:
    return int(manifest.get("options", {}).get("label_divisor", 1000))


def iter_split(output_dir: str, split: str, manifest: dict | None = None):
    """Every sample of a split, in record order."""
    manifest = manifest or load_manifest(output_dir)
    sink = get_sink(manifest["sink"])
    for shard in split_info(manifest, split, output_dir)["shards"]:
        if shard.get("records", 1):
            with storage.local_copy(storage.join(output_dir, shard["name"])) as path:
                yield from sink.read_shard(path)


def read_sample(output_dir: str, split: str, index: int, manifest: dict | None = None) -> Sample:
    """Record `index` of `split`: only the shard holding it is read, found by the shards' record counts."""
    manifest = manifest or load_manifest(output_dir)
    info = split_info(manifest, split, output_dir)
    total = sum(s["records"] for s in info["shards"])
    if not 0 <= index < total:
        raise CsconvError(f"{output_dir}: split {split!r} has {total} records; index {index} is out of range")
    offset = index
    for shard in info["shards"]:
        if offset < shard["records"]:
            path = storage.join(output_dir, shard["name"])
            with storage.local_copy(path) as local_path:
                for i, sample in enumerate(get_sink(manifest["sink"]).read_shard(local_path)):
                    if i == offset:
                        return sample
            raise InputError(path, f"holds fewer than the {shard['records']} records the manifest says")
        offset -= shard["records"]
    raise AssertionError("unreachable")


def label_maps(sample: Sample, divisor: int = 1000) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(semantic trainIds uint8, instance ids or None) of a sample; (None, None) without label."""
    from PIL import Image

    if sample.label is None:
        return None, None
    if isinstance(sample.label, np.ndarray):
        semantic, instance = np.divmod(sample.label, divisor)
        semantic = np.where((semantic >= 0) & (semantic < 256), semantic, IGNORE_LABEL).astype(np.uint8)
        return semantic, instance
    with Image.open(io.BytesIO(sample.label)) as image:
        return np.asarray(image).astype(np.uint8), None


def decode_image(sample: Sample):
    from PIL import Image

    with Image.open(io.BytesIO(sample.image)) as image:
        return image.convert("RGB")


# --- drawing --------------------------------------------------------------------------

def colour_label(semantic: np.ndarray) -> np.ndarray:
    return train_id_palette()[semantic]


def outline_mask(instance: np.ndarray) -> np.ndarray:
    """Pixels whose instance id differs from one of their 4 neighbours'."""
    edge = np.zeros(instance.shape, dtype=bool)
    horizontal = instance[:, 1:] != instance[:, :-1]
    vertical = instance[1:, :] != instance[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    return edge


def legend_entries(semantic: np.ndarray) -> list[tuple[tuple[int, int, int], str]]:
    palette = train_id_palette()
    present = np.flatnonzero(np.bincount(semantic.reshape(-1), minlength=256))
    entries = [(tuple(int(c) for c in palette[t]), TRAIN_NAMES[t]) for t in present if t in TRAIN_NAMES]
    if any(t not in TRAIN_NAMES for t in present):
        entries.append(((0, 0, 0), "ignore"))
    return entries


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def legend_layout(entries, width: int, font) -> tuple[int, int, int]:
    """(entry width, columns, legend height) for entries laid out in rows across `width`."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max((draw.textbbox((0, 0), name, font=font)[2] for _, name in entries), default=0)
    text_h = max(draw.textbbox((0, 0), "Ag", font=font)[3], SWATCH)
    entry_w = SWATCH + PAD + text_w + 2 * PAD
    columns = max(1, (width - PAD) // entry_w)
    rows = -(-len(entries) // columns) if entries else 0
    row_h = text_h + PAD
    return entry_w, columns, (PAD + rows * row_h if rows else 0)


def draw_legend(canvas, entries, top: int, width: int, font) -> None:
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    entry_w, columns, _ = legend_layout(entries, width, font)
    text_h = max(draw.textbbox((0, 0), "Ag", font=font)[3], SWATCH)
    row_h = text_h + PAD
    for i, (colour, name) in enumerate(entries):
        row, column = divmod(i, columns)
        x, y = PAD + column * entry_w, top + PAD + row * row_h
        draw.rectangle([x, y, x + SWATCH - 1, y + SWATCH - 1], fill=colour, outline=(160, 160, 160))
        draw.text((x + SWATCH + PAD, y), name, fill=LEGEND_TEXT, font=font)


def render_preview(sample: Sample, divisor: int = 1000, layout: str = "side"):
    """The preview picture of a sample (a PIL RGB image)."""
    from PIL import Image

    image = decode_image(sample)
    width, height = image.size
    semantic, instance = label_maps(sample, divisor)
    if semantic is None:
        raise CsconvError(f"{sample.split} record {sample.filename} has no label (test split?): nothing to colour")
    if semantic.shape != (height, width):
        raise CsconvError(f"{sample.filename}: label is {semantic.shape[1]}x{semantic.shape[0]}, image {width}x{height}")
    coloured = colour_label(semantic)
    if instance is not None:
        coloured[outline_mask(instance)] = OUTLINE
    entries = legend_entries(semantic)
    font = _font()
    panels_w, panels_h = (2 * width, height) if layout == "side" else (width, 2 * height)
    _, _, legend_h = legend_layout(entries, panels_w, font)
    canvas = Image.new("RGB", (panels_w, panels_h + legend_h), BACKGROUND)
    canvas.paste(image, (0, 0))
    canvas.paste(Image.fromarray(coloured, "RGB"), (width, 0) if layout == "side" else (0, height))
    draw_legend(canvas, entries, panels_h, panels_w, font)
    return canvas


def preview(output_dir: str, split: str, index: int, out_path: str, layout: str = "side"):
    manifest = load_manifest(output_dir)
    sample = read_sample(output_dir, split, index, manifest)
    picture = render_preview(sample, label_divisor(manifest), layout)
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    picture.save(out_path, format="PNG")
    return sample, picture
