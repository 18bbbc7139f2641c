import json
import os
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from csconv.core.labels import BY_NAME, label_for_polygon
from csconv.synthetic import generate_dataset, rasterize_polygon, render_labels

W, H = 128, 64


def gt_path(img: Path, kind: str) -> Path:
    parts = list(img.parts)
    i = len(parts) - 1 - parts[::-1].index("leftImg8bit")
    parts[i] = "gtFine"
    stem = img.name[: -len("_leftImg8bit.png")]
    return Path(*parts[:-1]) / f"{stem}_gtFine_{kind}"


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs")
    paths = generate_dataset(root, width=W, height=H, seed=3, write_color=True,
                             image_modes={1: "L", "bochum_000000_000019": "RGBA", 0: "P"})
    return root, paths


def labelled(paths):
    return [p for p in paths if p.parts[-3] in ("train", "val")]


def test_deterministic(tmp_path):
    a = generate_dataset(tmp_path / "a", width=64, height=32, seed=7)
    b = generate_dataset(tmp_path / "b", width=64, height=32, seed=7)
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    generate_dataset(tmp_path / "c", width=64, height=32, seed=8)
    assert files_of(tmp_path / "a") != files_of(tmp_path / "c")


def test_layout_and_names(tree):
    root, paths = tree
    assert paths == sorted(paths)
    assert len(paths) == 7
    rel = [p.relative_to(root).as_posix() for p in paths]
    assert "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png" in rel
    assert "leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png" in rel
    assert "leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit.png" in rel
    for p in paths:
        split, city = p.parts[-3], p.parts[-2]
        assert p.name.startswith(city + "_")
        for kind in ("polygons.json", "labelIds.png", "instanceIds.png", "color.png"):
            assert gt_path(p, kind).is_file(), (p, kind)
        assert gt_path(p, "labelIds.png").parent == root / "gtFine" / split / city
    doc = json.loads(gt_path(paths[0], "polygons.json").read_text())
    assert (doc["imgWidth"], doc["imgHeight"]) == (W, H)
    assert all(isinstance(v, int) for o in doc["objects"] for pt in o["polygon"] for v in pt)


def test_custom_cities_and_no_color(tmp_path):
    paths = generate_dataset(tmp_path, {"train": 3}, width=32, height=16,
                             cities={"train": ["alpha", "beta"]})
    assert [p.name for p in paths] == ["alpha_000000_000019_leftImg8bit.png",
                                      "alpha_000001_000019_leftImg8bit.png",
                                      "beta_000000_000019_leftImg8bit.png"]
    assert not list(tmp_path.rglob("*_color.png"))


def test_instance_ids_content(tree):
    _, paths = tree
    seen = set()
    per_frame = []
    for p in labelled(paths):
        im = Image.open(gt_path(p, "instanceIds.png"))
        assert im.mode == "I;16"
        inst = np.array(im)
        assert inst.dtype == np.uint16 and inst.shape == (H, W)
        labels = np.array(Image.open(gt_path(p, "labelIds.png")))
        assert labels.dtype == np.uint8
        expected = np.where(inst < 1000, inst, inst // 1000)
        assert np.array_equal(labels, expected)
        instances = int((np.unique(inst) >= 1000).sum())
        per_frame.append(instances)
        if instances:
            assert inst.max() > 255
        seen.update(np.unique(inst).tolist())
    if len(per_frame) >= 3:
        assert per_frame[2] == 0, "train frame 2 should hold no instance at all"
        assert per_frame[1] > max(per_frame[0], per_frame[2]), "train frame 1 should be the crowded one"
    ids = {v for v in seen if v < 1000}
    assert 0 in ids
    things = {BY_NAME[n].id for n in ("person", "rider", "car", "bicycle")}
    assert ids & things, "no crowd (group) pixels"
    assert any(v >= 1000 for v in seen)
    for name in ("parking", "rail track", "guard rail", "bridge", "polegroup"):
        assert BY_NAME[name].id in ids, name
    assert {BY_NAME[n].id for n in ("ego vehicle", "out of roi", "rectification border")} <= ids
    inst_classes = {v // 1000 for v in seen if v >= 1000}
    assert {BY_NAME["car"].id, BY_NAME["person"].id} <= inst_classes


def test_json_contents(tree):
    _, paths = tree
    names = set()
    for p in labelled(paths):
        doc = json.loads(gt_path(p, "polygons.json").read_text())
        names.update(o["label"] for o in doc["objects"])
        assert any(o.get("deleted") == 1 for o in doc["objects"])
    for name in ("sky", "building", "road", "sidewalk", "vegetation", "terrain", "wall", "fence",
                 "pole", "traffic light", "traffic sign", "ego vehicle", "rectification border",
                 "out of roi", "static", "dynamic", "ground", "parking", "rail track",
                 "guard rail", "bridge", "tunnel", "polegroup", "caravan", "trailer",
                 "license plate", "car", "person", "rider", "bicycle", "motorcycle", "truck",
                 "bus", "train", "persongroup", "cargroup", "bicyclegroup", "ridergroup"):
        assert name in names, name
    test = [p for p in paths if p.parts[-3] == "test"]
    for p in test:
        doc = json.loads(gt_path(p, "polygons.json").read_text())
        assert {o["label"] for o in doc["objects"]} <= {"ego vehicle", "out of roi",
                                                        "rectification border"}
        inst = np.array(Image.open(gt_path(p, "instanceIds.png")))
        assert inst.max() < 4


def test_matches_own_render_and_skips(tree):
    _, paths = tree
    p = labelled(paths)[0]
    doc = json.loads(gt_path(p, "polygons.json").read_text())
    labels, inst = render_labels(doc["objects"], W, H)
    assert np.array_equal(inst, np.array(Image.open(gt_path(p, "instanceIds.png"))))
    # Deleted objects and license plates never reach the PNGs.
    kept = [o for o in doc["objects"] if not o.get("deleted") and o["label"] != "license plate"]
    assert np.array_equal(render_labels(kept, W, H)[1], inst)


def pillow_redraw(doc):
    im = Image.new("L", (doc["imgWidth"], doc["imgHeight"]), 0)
    draw = ImageDraw.Draw(im)
    for obj in doc["objects"]:
        if obj.get("deleted"):
            continue
        label = label_for_polygon(obj["label"])
        if label.id < 0:
            continue
        draw.polygon([tuple(pt) for pt in obj["polygon"]], fill=label.id)
    return np.array(im)


def test_pillow_redraw_differs_on_edges_only(tree):
    _, paths = tree
    for p in labelled(paths):
        doc = json.loads(gt_path(p, "polygons.json").read_text())
        ours = np.array(Image.open(gt_path(p, "labelIds.png")))
        redraw = pillow_redraw(doc)
        agree = (ours == redraw).mean()
        assert 0.95 < agree < 1.0, (p.name, agree)


def test_rasterizer_rectangle_inclusive():
    y0, x0, mask = rasterize_polygon([(2, 1), (5, 1), (5, 3), (2, 3)], 10, 10)
    assert (y0, x0, mask.shape) == (1, 2, (3, 4)) and mask.all()
    assert rasterize_polygon([(-5, -5), (-1, -5), (-1, -1)], 10, 10) is None


def test_image_modes(tree):
    _, paths = tree
    by_name = {p.name: p for p in paths}
    colour_type = {}
    for p in paths:
        raw = p.read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        assert raw[24] == 8  # bit depth
        colour_type[p.name] = raw[25]
    assert colour_type["aachen_000000_000019_leftImg8bit.png"] == 3  # index 0 -> P
    assert colour_type["bochum_000000_000019_leftImg8bit.png"] == 6  # stem -> RGBA
    assert colour_type["lindau_000000_000019_leftImg8bit.png"] == 0  # val index 1 -> L
    assert colour_type["bremen_000000_000019_leftImg8bit.png"] == 2  # default RGB
    assert Image.open(by_name["bremen_000000_000019_leftImg8bit.png"]).size == (W, H)
    colour = Image.open(gt_path(paths[0], "color.png"))
    assert colour.mode == "RGBA" and colour.size == (W, H)


def test_tiny_frames(tmp_path):
    paths = generate_dataset(tmp_path, {"train": 2, "test": 1}, width=8, height=4)
    assert len(paths) == 3
    for p in paths:
        assert Image.open(p).size == (8, 4)
        assert np.array(Image.open(gt_path(p, "instanceIds.png"))).shape == (4, 8)


def test_many_instances(tmp_path):
    (p,) = generate_dataset(tmp_path, {"train": 1}, width=256, height=128, many_instances=1200)
    inst = np.array(Image.open(gt_path(p, "instanceIds.png")))
    doc = json.loads(gt_path(p, "polygons.json").read_text())
    cars = [o for o in doc["objects"] if o["label"] == "car" and not o.get("deleted")]
    assert len(cars) > 1200
    # k >= 1000 spills into the next label's id range, as the Cityscapes encoding would.
    assert (inst >= 27000).any() and (inst // 1000 == 26).sum() > 0
    with pytest.raises(ValueError):
        generate_dataset(tmp_path / "small", {"train": 1}, width=16, height=8,
                         many_instances=1200)


def test_cityscapesscripts_accepts_tree(tmp_path):
    # cityscapesscripts is a test dependency: its tools are found next to this Python
    # even when the virtualenv is not activated (no skip that would hide a broken install).
    from conftest import console_script

    generate_dataset(tmp_path, {"train": 2, "val": 1, "test": 1}, width=96, height=48)
    env = dict(os.environ, CITYSCAPES_DATASET=str(tmp_path))
    for cmd in ([console_script("csCreateTrainIdLabelImgs")],
                [console_script("csCreatePanopticImgs"), "--use-train-id"]):
        subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=tmp_path)
    for split in ("train", "val", "test"):
        out = json.loads((tmp_path / "gtFine" / f"cityscapes_panoptic_{split}_trainId.json")
                         .read_text())
        assert out["annotations"] and out["images"]
    assert len(list(tmp_path.glob("gtFine/*/*/*_labelTrainIds.png"))) == 4


def test_full_size_train_has_a_crowded_frame_and_an_empty_one(tmp_path):
    # Sizes are what decide how many instances fit: check at a realistic scale.
    paths = generate_dataset(tmp_path, {"train": 3}, width=512, height=256)
    counts = []
    for p in paths:
        inst = np.array(Image.open(gt_path(p, "instanceIds.png")))
        counts.append(int((np.unique(inst) >= 1000).sum()))
    assert counts[1] > 100 and counts[2] == 0 and 0 < counts[0] < 100



REAL = Path(__file__).resolve().parents[2] / "shared" / "cityscapes-real"
REAL_LAYOUT = [b"IHDR", b"gAMA", b"sRGB", b"cHRM", b"bKGD", b"pHYs", b"IDAT", b"tEXt", b"tEXt", b"IEND"]


def chunk_list(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack_from(">I", data, pos + 8 + length)[0]
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def layout(chunks) -> list[bytes]:
    """Chunk types in file order, a run of IDAT counted once."""
    kinds = []
    for kind, _ in chunks:
        if not (kind == b"IDAT" and kinds[-1:] == [b"IDAT"]):
            kinds.append(kind)
    return kinds


def texts(chunks) -> list[tuple[bytes, bytes]]:
    return [tuple(body.split(b"\0", 1)) for kind, body in chunks if kind == b"tEXt"]


def idat_sizes(chunks) -> list[int]:
    return [len(body) for kind, body in chunks if kind == b"IDAT"]


def test_images_carry_what_real_frames_carry(tree):
    _, paths = tree
    rgb = [p for p in paths if Image.open(p).mode == "RGB"]
    assert rgb
    stamps = set()
    for p in rgb:
        chunks = chunk_list(p.read_bytes())
        assert layout(chunks) == REAL_LAYOUT, p
        (create, created), (modify, modified) = texts(chunks)
        assert (create, modify) == (b"date:create", b"date:modify") and created == modified
        stamps.add(created)
    assert len(stamps) == len(rgb), "each frame has its own time stamp"
    # Other modes carry the same chunks, Pillow's own (a palette) where the PNG spec
    # puts them, and Pillow reads them all.
    for p in paths:
        kinds = layout(chunk_list(p.read_bytes()))
        assert [k for k in kinds if k not in (b"PLTE", b"tRNS")] == REAL_LAYOUT, p
        im = Image.open(p)
        im.load()
        assert im.info["date:create"] and im.info["gamma"] == 0.45455


def test_full_size_images_split_their_pixels_like_real_frames(tmp_path):
    (path,) = generate_dataset(tmp_path, {"train": 1}, width=512, height=256)
    sizes = idat_sizes(chunk_list(path.read_bytes()))
    assert len(sizes) > 1 and set(sizes[:-1]) == {32768} and 0 < sizes[-1] <= 32768


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Cityscapes frames not present at {REAL}")
def test_chunk_sequence_matches_the_real_frames(tree):
    _, paths = tree
    real = sorted((REAL / "leftImg8bit").rglob("*_leftImg8bit.png"))
    assert real
    synthetic_rgb = [p for p in paths if Image.open(p).mode == "RGB"]
    fixed = {}
    for p in real + synthetic_rgb:
        chunks = chunk_list(p.read_bytes())
        assert layout(chunks) == REAL_LAYOUT, p
        assert [keyword for keyword, _ in texts(chunks)] == [b"date:create", b"date:modify"], p
        assert set(idat_sizes(chunks)[:-1]) <= {32768}, p
        # Not just the same types: the same gamma, primaries, background, density.
        fixed[p] = [c for c in chunks if c[0] in (b"gAMA", b"sRGB", b"cHRM", b"bKGD", b"pHYs")]
    assert len({tuple(v) for v in fixed.values()}) == 1


def test_full_size_outlines_are_as_intricate_as_real_annotations(tmp_path):
    """Real polygons hold 1,121-3,054 vertices per frame, traced a few pixels apart; the
    generator's must not be simpler, or label decoding is timed on easier files."""

    real = Path(__file__).resolve().parents[2] / "shared" / "cityscapes-real" / "gtFine" / "train" / "aachen"
    generate_dataset(tmp_path, {"train": 4}, width=2048, height=1024, seed=0)
    synthetic = sorted(tmp_path.glob("gtFine/train/*/*_gtFine_polygons.json"))

    def vertices(path):
        return sum(len(o["polygon"]) for o in json.loads(path.read_text())["objects"])

    counts = [vertices(p) for p in synthetic]
    floor = min(vertices(p) for p in real.glob("*_polygons.json")) if real.is_dir() else 1121
    assert min(counts) >= floor, counts
