"""The prework floor: the least work any maker of the cityscapesscripts prework files must do.

Usage: python bench/prework_floor.py CITYSCAPES_ROOT OUTPUT_DIR

In one process, for every split of gtFine (train, val, test) and every frame in it:
  * read the polygons JSON, parse it, and draw its polygons in file order with Pillow's
    polygon fill on an 8-bit canvas (the label image is that drawing: no way around it);
  * read the 16-bit instanceIds PNG, decode it once with imagecodecs' libpng, and map it
    through a 65536-entry table to the panoptic image's two colour bytes (B is 0);
  * save every output file with Pillow's default settings, as the reference tools do:
    the labelTrainIds PNG, and the panoptic PNG twice (the trainId folder's and the
    original-id folder's: the same image);
  * and per split, two JSON files of each frame's segment ids and areas (a bincount of
    the values, no bounding boxes), with json's fast encoder.

No label table lookups beyond one dict, no validation, no bounding boxes, no
indentation, no temporary files and no renames: anything a real maker does beyond this
is overhead, so bench/run.py compares `csconv prework`'s CPU time against it.
Deliberately free of csconv imports, so a bug in csconv cannot make the floor look slow.
"""

from __future__ import annotations

import io
import json
import os
import sys

import imagecodecs
import numpy as np
from PIL import Image, ImageDraw

SPLITS = ("train", "val", "test")
# Any value per name will do for the cost; unknown names draw as 255.
TRAIN_IDS = {"road": 0, "sidewalk": 1, "building": 2, "wall": 3, "fence": 4, "pole": 5, "traffic light": 6,
             "traffic sign": 7, "vegetation": 8, "terrain": 9, "sky": 10, "person": 11, "rider": 12, "car": 13,
             "truck": 14, "bus": 15, "train": 16, "motorcycle": 17, "bicycle": 18}


def frames(root: str, split: str):
    """(city folder, frame stem) of every polygons file of a split, sorted."""
    split_dir = os.path.join(root, "gtFine", split)
    if not os.path.isdir(split_dir):
        return
    for city in sorted(os.listdir(split_dir)):
        city_dir = os.path.join(split_dir, city)
        for name in sorted(os.listdir(city_dir)):
            if name.endswith("_gtFine_polygons.json"):
                yield city_dir, name[: -len("_polygons.json")]


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="png")
    return out.getvalue()


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    root, output = argv
    keep = np.arange(1 << 16, dtype="<u2")  # the real table zeroes the ignored labels' values
    count = 0
    for split in SPLITS:
        folders = {flavour: os.path.join(output, f"cityscapes_panoptic_{split}{flavour}") for flavour in ("", "_trainId")}
        labels_dir = os.path.join(output, split)
        segments = []
        for city_dir, stem in frames(root, split):
            with open(os.path.join(city_dir, stem + "_polygons.json"), "rb") as f:
                doc = json.load(f)
            canvas = Image.new("L", (doc["imgWidth"], doc["imgHeight"]), 255)
            draw = ImageDraw.Draw(canvas)
            for obj in doc["objects"]:
                draw.polygon([tuple(p) for p in obj["polygon"]], fill=TRAIN_IDS.get(obj["label"], 255))
            os.makedirs(labels_dir, exist_ok=True)
            write(os.path.join(labels_dir, stem + "_labelTrainIds.png"), png_bytes(canvas))

            with open(os.path.join(city_dir, stem + "_instanceIds.png"), "rb") as f:
                ids = imagecodecs.png_decode(f.read())
            rgb = np.zeros(ids.shape + (3,), dtype=np.uint8)
            rgb[..., :2] = keep[ids].view(np.uint8).reshape(ids.shape + (2,))
            panoptic = png_bytes(Image.fromarray(rgb, "RGB"))
            for folder in folders.values():
                os.makedirs(folder, exist_ok=True)
                write(os.path.join(folder, stem + "_panoptic.png"), panoptic)
            areas = np.bincount(ids.reshape(-1), minlength=1)
            present = np.flatnonzero(areas)
            segments.append({"image_id": stem, "segments_info": [
                {"id": int(v), "area": int(areas[v])} for v in present.tolist()]})
            count += 1
        if segments:
            for folder in folders.values():
                write(folder + ".json", json.dumps({"annotations": segments}).encode())
    print(f"prework floor: {count} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
