"""Coarse annotations (gtCoarse, and the coarse-only train_extra split): the synthetic
generator writes them as the download has them, and `convert --annotations coarse`
stores the labels cityscapesscripts' csCreateTrainIdLabelImgs draws from them.

The oracle is the real csCreateTrainIdLabelImgs, which walks gtCoarse as well as gtFine
(conftest.run_prework), run on a copy of the same synthetic tree; the records are read
back with TensorFlow and DeepLab2's feature keys.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import csconv
from conftest import console_script, read_tfrecord, run_prework
from test_archives import make_archives, shard_bytes

from csconv import SplitSizeWarning
from csconv.core.errors import CsconvError, InputError
from csconv.core.prework import Kind
from csconv.core.sources import EXTRA_IMAGES_ZIP, GTCOARSE_ZIP, IMAGES_ZIP, open_dataset
from csconv.prework import prework
from csconv.prework.records import MANIFEST_NAME
from csconv.synthetic import generate_dataset

SIZES = {"train": 4, "val": 2, "test": 1, "train_extra": 5}
COARSE_SPLITS = ("train", "val", "train_extra")
SPEC = dict(width=96, height=48, seed=5, image_modes={1: "P", 3: "RGBA"}, coarse=True)


def files_of(root: Path, top: str = "") -> dict[str, bytes]:
    base = root / top
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def coarse(tmp_path_factory):
    """(raw tree, the tree after cityscapesscripts' prework, the folder of official archives)."""
    base = tmp_path_factory.mktemp("coarse")
    raw = base / "raw"
    generate_dataset(raw, SIZES, **SPEC)
    prepared = run_prework(raw, base / "prepared")
    make_archives(raw, base / "download")
    return raw, prepared, base / "download"


def stems(root: Path, top: str, split: str, suffix: str) -> list[str]:
    return sorted(p.name[: -len(suffix)] for p in (root / top / split).glob(f"*/*{suffix}"))


# --- the generator ----------------------------------------------------------------------

def test_generator_writes_gtcoarse_as_the_download_has_it(coarse):
    raw, _, _ = coarse
    assert sorted(p.name for p in (raw / "gtCoarse").iterdir()) == sorted(COARSE_SPLITS)
    assert sorted(p.name for p in (raw / "gtFine").iterdir()) == ["test", "train", "val"]
    for split in COARSE_SPLITS:
        images = stems(raw, "leftImg8bit", split, "_leftImg8bit.png")
        assert len(images) == SIZES[split]
        for kind in ("polygons.json", "labelIds.png", "instanceIds.png"):
            assert stems(raw, "gtCoarse", split, f"_gtCoarse_{kind}") == images, (split, kind)
    # train_extra's cities are the real ones, hyphens included.
    assert "bad-honnef" in {p.name for p in (raw / "leftImg8bit" / "train_extra").iterdir()}
    # The cases csCreateTrainIdLabelImgs treats apart occur in coarse files too.
    objects = [o for path in raw.glob("gtCoarse/*/*/*_polygons.json") for o in json.loads(path.read_text())["objects"]]
    assert any(o.get("deleted") for o in objects)
    assert any(o["label"] == "license plate" for o in objects)
    assert any(o["label"].endswith("group") for o in objects)
    label_ids = Image.open(next((raw / "gtCoarse" / "train_extra").glob("*/*_gtCoarse_labelIds.png")))
    instance_ids = Image.open(next((raw / "gtCoarse" / "train_extra").glob("*/*_gtCoarse_instanceIds.png")))
    assert (label_ids.mode, instance_ids.mode, label_ids.size) == ("L", "I;16", (96, 48))


def test_coarse_colour_files_come_with_write_color(tmp_path):
    generate_dataset(tmp_path, {"train_extra": 1}, width=32, height=16, write_color=True)
    assert len(list(tmp_path.glob("gtCoarse/train_extra/*/*_gtCoarse_color.png"))) == 1


def test_asking_for_coarse_changes_no_other_byte(coarse, tmp_path):
    raw, _, _ = coarse
    fine_only = {split: n for split, n in SIZES.items() if split != "train_extra"}
    generate_dataset(tmp_path, fine_only, **{**SPEC, "coarse": False})
    assert not (tmp_path / "gtCoarse").exists()
    ours = {path: data for path, data in files_of(raw).items()
            if not path.startswith("gtCoarse") and "/train_extra/" not in path}
    assert files_of(tmp_path) == ours


def test_coarse_generation_is_deterministic(coarse, tmp_path):
    raw, _, _ = coarse
    generate_dataset(tmp_path, SIZES, **SPEC)
    assert files_of(tmp_path) == files_of(raw)


def test_coarse_polygons_are_fewer_rougher_and_cover_less(tmp_path):
    generate_dataset(tmp_path, {"train": 3, "val": 1}, width=1024, height=512, seed=2, coarse=True)
    for fine in sorted(tmp_path.glob("gtFine/*/*/*_gtFine_polygons.json")):
        rough = Path(str(fine).replace("gtFine", "gtCoarse"))
        fine_doc, rough_doc = json.loads(fine.read_text()), json.loads(rough.read_text())
        assert (rough_doc["imgWidth"], rough_doc["imgHeight"]) == (1024, 512)
        assert 0 < len(rough_doc["objects"]) < len(fine_doc["objects"])
        assert all(3 <= len(o["polygon"]) <= 7 for o in rough_doc["objects"])
        assert all(0 <= x < 1024 and 0 <= y < 512 for o in rough_doc["objects"] for x, y in o["polygon"])
        unlabelled = [(np.asarray(Image.open(str(path).replace("_polygons.json", "_labelIds.png"))) == 0).mean()
                      for path in (fine, rough)]
        assert unlabelled[1] > max(0.2, 3 * unlabelled[0]), (rough, unlabelled)


def test_archives_are_laid_out_as_the_download(coarse):
    _, _, download = coarse
    with zipfile.ZipFile(download / GTCOARSE_ZIP) as archive:
        tops = {tuple(n.split("/")[:2]) for n in archive.namelist() if n.startswith("gtCoarse/")}
    assert tops == {("gtCoarse", split) for split in COARSE_SPLITS}
    with zipfile.ZipFile(download / EXTRA_IMAGES_ZIP) as archive:
        assert {n.split("/")[1] for n in archive.namelist() if n.startswith("leftImg8bit/")} == {"train_extra"}
    with zipfile.ZipFile(download / IMAGES_ZIP) as archive:
        assert not [n for n in archive.namelist() if "/train_extra/" in n]


# --- discovery ----------------------------------------------------------------------------

def test_coarse_input_is_the_tree_or_the_archives(coarse, tmp_path):
    raw, _, download = coarse
    tree, zips = open_dataset(str(raw), annotations="coarse"), open_dataset(str(download), annotations="coarse")
    assert tree.labels_base.path == str(raw / "gtCoarse") and not tree.from_archives
    assert zips.from_archives and zips.labels_base.member == "gtCoarse"
    for split in COARSE_SPLITS:
        assert [stem for _, _, stem in tree.list_images(split)] == [stem for _, _, stem in zips.list_images(split)]
    assert str(zips.images_dir("train_extra")) == f"{download / EXTRA_IMAGES_ZIP}::leftImg8bit/train_extra"
    (tmp_path / "leftImg8bit").mkdir()
    with pytest.raises(CsconvError, match="missing gtCoarse/ .*gtCoarse.zip and leftImg8bit_trainvaltest.zip or "
                                          "leftImg8bit_trainextra.zip"):
        open_dataset(str(tmp_path), annotations="coarse")


# --- conversion -------------------------------------------------------------------------------

def convert_coarse(root, output_dir, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitSizeWarning)
        return csconv.convert(root, output_dir, create_panoptic_data=False, annotations="coarse",
                              workers=1, **options)


def test_coarse_records_hold_cityscapesscripts_labels(coarse, tmp_path):
    raw, prepared, _ = coarse
    summary = convert_coarse(raw, tmp_path)
    assert summary.splits == {split: SIZES[split] for split in COARSE_SPLITS}
    assert not list(tmp_path.glob("test-*"))
    for split in COARSE_SPLITS:
        images = sorted((raw / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"), key=str)
        per_shard = math.ceil(len(images) / 10)
        records = []
        for k in range(10):
            shard = read_tfrecord(tmp_path / f"{split}-{k:05d}-of-00010.tfrecord")
            assert len(shard) == len(images[k * per_shard:(k + 1) * per_shard]), (split, k)
            records += shard
        for image, record in zip(images, records, strict=True):
            stem = image.name[: -len("_leftImg8bit.png")]
            city = image.parent.name
            expected = prepared / "gtCoarse" / split / city / f"{stem}_gtCoarse_labelTrainIds.png"
            assert record["image/filename"] == stem.encode()
            assert record["image/segmentation/class/format"] == b"png"
            assert record["image/segmentation/class/encoded"] == expected.read_bytes(), expected
            with Image.open(image) as opened:
                assert (record["image/width"], record["image/height"]) == opened.size
                if opened.mode == "RGB":
                    assert record["image/encoded"] == image.read_bytes()


def test_coarse_labels_are_not_the_fine_ones(coarse, tmp_path):
    raw, _, _ = coarse
    fine = list(csconv.samples(raw, "train", task="semantic"))
    rough = list(csconv.samples(raw, "train", task="semantic", annotations="coarse"))
    assert [s.filename for s in fine] == [s.filename for s in rough]
    assert all(a.image == b.image and a.label != b.label for a, b in zip(fine, rough))
    assert all((s.label_array() == 255).mean() > (f.label_array() == 255).mean() for s, f in zip(rough, fine))


def test_coarse_from_the_archives_is_byte_identical_to_the_tree(coarse, tmp_path):
    raw, _, download = coarse
    convert_coarse(raw, tmp_path / "tree")
    convert_coarse(download, tmp_path / "zips")
    assert shard_bytes(tmp_path / "zips") == shard_bytes(tmp_path / "tree")
    assert len(shard_bytes(tmp_path / "tree")) == 30


def test_samples_are_what_convert_stores(coarse, tmp_path):
    raw, _, download = coarse
    convert_coarse(raw, tmp_path, splits=["train_extra"])
    stored = list(csconv.read(tmp_path, "train_extra"))
    assert list(csconv.samples(download, "train_extra", task="semantic", annotations="coarse")) == stored


def test_panoptic_from_coarse_and_coarse_test_split_are_refused(coarse, tmp_path):
    raw, _, _ = coarse
    with pytest.raises(CsconvError, match="^--annotations coarse makes semantic labels only .*gtFine alone"):
        csconv.convert(raw, tmp_path, annotations="coarse")
    with pytest.raises(CsconvError, match="coarse annotations hold no 'test' split"):
        convert_coarse(raw, tmp_path, splits="test")
    with pytest.raises(CsconvError, match="annotations must be fine or coarse, got 'rough'"):
        csconv.samples(raw, "train", task="semantic", annotations="rough")
    assert not list(tmp_path.iterdir())


# --- prework ------------------------------------------------------------------------------------

def new_files(root: Path, inputs: dict[str, bytes]) -> dict[str, bytes]:
    return {path: data for path, data in files_of(root).items()
            if path not in inputs and path != MANIFEST_NAME}


@pytest.fixture(scope="module")
def reference_outputs(coarse):
    """What csCreateTrainIdLabelImgs and csCreatePanopticImgs --use-train-id added to the tree."""
    raw, prepared, _ = coarse
    return new_files(prepared, files_of(raw))


def test_prework_of_both_sets_is_cityscapesscripts_bytes(coarse, reference_outputs, tmp_path):
    raw, _, download = coarse
    assert any(path.startswith("gtCoarse/train_extra/") for path in reference_outputs)
    kinds = (Kind.LABEL_TRAIN_IDS, Kind.PANOPTIC_TRAIN_ID)  # what conftest.run_prework runs
    ours = tmp_path / "tree"
    shutil.copytree(raw, ours)
    summary = prework(str(ours), None, kinds, annotations=("fine", "coarse"))
    assert new_files(ours, files_of(raw)) == reference_outputs
    assert summary.counts["gtCoarse/train_extra"] == {"labelTrainIds": SIZES["train_extra"]}
    prework(str(download), str(tmp_path / "from-zips"), kinds, annotations=("fine", "coarse"))
    assert new_files(tmp_path / "from-zips", {}) == reference_outputs


def test_prework_of_coarse_alone_makes_its_label_train_ids(coarse, reference_outputs, tmp_path):
    _, _, download = coarse
    summary = prework(str(download), str(tmp_path), annotations=("coarse",))
    coarse_outputs = {path: data for path, data in reference_outputs.items() if path.startswith("gtCoarse/")}
    assert new_files(tmp_path, {}) == coarse_outputs
    assert sorted(summary.counts) == [f"gtCoarse/{split}" for split in sorted(COARSE_SPLITS)]
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert (manifest["annotations"], manifest["make"]) == (["coarse"], ["labelTrainIds"])


def test_prework_instance_train_ids_of_coarse_are_the_tools_values(coarse, tmp_path):
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage

    raw, _, _ = coarse
    prework(str(raw), str(tmp_path), (Kind.INSTANCE_TRAIN_IDS,), ["train_extra"], annotations=("coarse",))
    polygons = sorted((raw / "gtCoarse" / "train_extra").glob("*/*_gtCoarse_polygons.json"))
    assert len(polygons) == SIZES["train_extra"]
    for path in polygons:
        annotation = Annotation()
        annotation.fromJsonFile(str(path))
        ours = tmp_path / path.relative_to(raw).parent / path.name.replace("_polygons.json", "_instanceTrainIds.png")
        assert np.array_equal(np.asarray(Image.open(ours)), np.asarray(createInstanceImage(annotation, "trainIds")))


def test_prework_refusals(coarse, tmp_path):
    raw, _, download = coarse
    with pytest.raises(CsconvError, match="^--make panoptic_trainId,panoptic needs --annotations fine: panoptic files "
                                          "are made from gtFine's"):
        prework(str(raw), str(tmp_path), (Kind.LABEL_TRAIN_IDS, Kind.PANOPTIC_TRAIN_ID, Kind.PANOPTIC),
                annotations=("coarse",))
    with pytest.raises(CsconvError, match=f"^{download / GTCOARSE_ZIP}: the annotations are read from the archive"):
        prework(str(download), None, annotations=("coarse",))
    with pytest.raises(InputError, match=f"^{tmp_path}: no gtCoarse/ folder and no gtCoarse.zip"):
        prework(str(tmp_path), str(tmp_path / "o"), annotations=("coarse",))
    # A split only gtCoarse holds is done there alone; one neither holds is an error.
    summary = prework(str(raw), str(tmp_path / "extra"), splits=["train_extra"], annotations=("fine", "coarse"))
    assert list(summary.counts) == ["gtCoarse/train_extra"]
    with pytest.raises(InputError, match="no \\*_gt\\*_polygons.json files for split 'nowhere'"):
        prework(str(raw), str(tmp_path / "nowhere"), splits=["nowhere"], annotations=("fine", "coarse"))
    with pytest.raises(InputError, match="polygons JSON claims 96x48 pixels, more than --max_pixels \\(1,000\\)"):
        prework(str(raw), str(tmp_path / "bomb"), annotations=("coarse",), max_pixels=1000)


# --- the command line ------------------------------------------------------------------------------

def csconv_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([console_script("csconv"), *args], capture_output=True, text=True, timeout=300)


def test_cli_prework_of_both_sets_in_workers(coarse, reference_outputs, tmp_path):
    raw, _, download = coarse
    ours = tmp_path / "tree"
    shutil.copytree(raw, ours)
    flags = ["--annotations", "fine,coarse", "--make", "labelTrainIds,panoptic_trainId", "--workers", "2", "--quiet"]
    done = csconv_cli("prework", "--cityscapes_root", str(ours), *flags)
    assert done.returncode == 0, done.stderr
    assert new_files(ours, files_of(raw)) == reference_outputs
    done = csconv_cli("prework", "--cityscapes_root", str(download), "--output_root", str(tmp_path / "o"), *flags)
    assert done.returncode == 0, done.stderr
    assert new_files(tmp_path / "o", {}) == reference_outputs


def test_cli_coarse_conversion_from_the_archives(coarse, tmp_path):
    raw, _, download = coarse
    convert_coarse(raw, tmp_path / "api")
    done = csconv_cli("--cityscapes_root", str(download), "--output_dir", str(tmp_path / "cli"),
                      "--annotations", "coarse", "--create_panoptic_data=false", "--workers", "2", "--quiet")
    assert done.returncode == 0, done.stderr
    assert shard_bytes(tmp_path / "cli") == shard_bytes(tmp_path / "api")


@pytest.mark.parametrize("args, message", [
    (["prework", "--annotations", "coarse", "--make", "labelTrainIds,panoptic"],
     "--make panoptic needs --annotations fine: panoptic files are made from gtFine's *_instanceIds.png alone, "
     "as cityscapesscripts' csCreatePanopticImgs makes them"),
    (["prework", "--annotations", "rough"],
     "--annotations takes a comma-separated list of fine, coarse, got 'rough'"),
    (["prework", "--annotations", "coarse", "--max_pixels", "1000"],
     "{polygons}: polygons JSON claims 96x48 pixels, more than --max_pixels (1,000)"),
    (["convert", "--annotations", "coarse"],
     "--annotations coarse makes semantic labels only (--create_panoptic_data=false): panoptic labels come from "
     "gtFine alone, as cityscapesscripts' csCreatePanopticImgs makes them"),
])
def test_cli_refusals_are_one_line(coarse, tmp_path, args, message):
    raw, _, _ = coarse
    out = ["--output_root", str(tmp_path / "o")] if args[0] == "prework" else ["--output_dir", str(tmp_path / "o")]
    done = csconv_cli(*args, "--cityscapes_root", str(raw), *out, "--workers", "1")
    polygons = sorted((raw / "gtCoarse" / "train").glob("*/*_gtCoarse_polygons.json"))[0]
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"csconv: error: {message.format(polygons=polygons)}"]


def test_coarse_from_prepared_labels_and_labelids(coarse, tmp_path):
    """--source prepared stores the *_gtCoarse_labelTrainIds.png beside the polygons as
    they are (here cityscapesscripts' own, so the records equal the raw conversion's);
    --source labelids remaps the shipped *_gtCoarse_labelIds.png, which the generator
    rasterized with other software than Pillow: the same frames, labels differing."""
    raw, prepared, _ = coarse
    drawn = list(csconv.samples(raw, "train_extra", task="semantic", annotations="coarse"))
    assert list(csconv.samples(prepared, "train_extra", task="semantic", annotations="coarse",
                               source="prepared")) == drawn
    remapped = list(csconv.samples(raw, "train_extra", task="semantic", annotations="coarse", source="labelids"))
    assert [s.filename for s in remapped] == [s.filename for s in drawn]
    assert any(a.label != b.label for a, b in zip(remapped, drawn))
    for sample in remapped:
        differ = (sample.label_array() != next(d for d in drawn if d.filename == sample.filename).label_array()).mean()
        assert differ < 0.05, (sample.filename, differ)


def test_resume_does_not_keep_fine_shards_for_a_coarse_run(coarse, tmp_path):
    raw, _, _ = coarse
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitSizeWarning)
        csconv.convert(raw, tmp_path, create_panoptic_data=False, splits="train", workers=1)
    fine = shard_bytes(tmp_path)
    summary = convert_coarse(raw, tmp_path, splits="train", resume=True)
    assert summary.kept == 0
    assert shard_bytes(tmp_path) != fine
    assert json.loads((tmp_path / "csconv-manifest.json").read_text())["options"]["annotations"] == "coarse"


def test_coarse_archives_named_directly(coarse, tmp_path):
    raw, _, download = coarse
    convert_coarse(raw, tmp_path / "tree")
    tree = shard_bytes(tmp_path / "tree")
    done = csconv_cli("--gtcoarse_zip", str(download / GTCOARSE_ZIP), "--images_zip", str(download / IMAGES_ZIP),
                      "--extra_images_zip", str(download / EXTRA_IMAGES_ZIP), "--output_dir", str(tmp_path / "all"),
                      "--annotations", "coarse", "--nocreate_panoptic_data", "--workers", "2", "--quiet")
    assert done.returncode == 0, done.stderr
    assert shard_bytes(tmp_path / "all") == tree
    # The extra images alone hold train_extra alone.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = csconv.convert(None, tmp_path / "extra", create_panoptic_data=False, annotations="coarse", workers=1,
                                 gtcoarse_zip=download / GTCOARSE_ZIP, extra_images_zip=download / EXTRA_IMAGES_ZIP)
    assert [str(w.message) for w in caught if not issubclass(w.category, SplitSizeWarning)] == [
        f"the input holds no {split!r} split; converting train_extra" for split in ("train", "val")]
    assert summary.splits == {"train_extra": SIZES["train_extra"]}
    assert shard_bytes(tmp_path / "extra") == {name: data for name, data in tree.items() if name.startswith("train_extra-")}


@pytest.mark.parametrize("annotations, archives, message", [
    ("fine", {"gtcoarse_zip": GTCOARSE_ZIP}, "--gtcoarse_zip and --extra_images_zip are the coarse annotations' "
                                             "archives: give them with --annotations coarse"),
    ("coarse", {"gtfine_zip": "gtFine_trainvaltest.zip", "images_zip": IMAGES_ZIP},
     "--gtfine_zip is the fine annotations' archive: give --gtcoarse_zip for coarse annotations"),
    ("coarse", {"gtcoarse_zip": GTCOARSE_ZIP}, "--gtcoarse_zip goes with --images_zip and/or --extra_images_zip"),
    ("coarse", {}, "give --cityscapes_root, or --gtcoarse_zip with --images_zip and/or --extra_images_zip"),
])
def test_named_archives_of_the_wrong_set_are_refused(coarse, annotations, archives, message):
    _, _, download = coarse
    named = {flag: str(download / name) for flag, name in archives.items()}
    with pytest.raises(CsconvError, match=f"^{message}"):
        open_dataset(None, annotations=annotations, **named)
