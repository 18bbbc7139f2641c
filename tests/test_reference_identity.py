"""csconv's TFRecords against the reference chain, record by record, shard by shard.

The reference is cityscapesscripts' prework (run for real on a copy of each synthetic
root, see conftest.run_prework) followed by DeepLab2's build semantics, which
tests/oracle.py re-implements independently. csconv's shards are read back with
TensorFlow itself.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import oracle
from conftest import console_script, run_csconv_subprocess, subprocess_env

IMAGE_KEYS = {
    "image/encoded", "image/filename", "image/format", "image/height", "image/width", "image/channels",
}
LABEL_KEYS = {"image/segmentation/class/encoded", "image/segmentation/class/format"}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16] + f"..({len(data)} bytes)"


# --- shared state: oracle results and conversions, computed once per session -----------

@pytest.fixture(scope="session")
def expected(synthetic):
    """`expected(dataset, panoptic, crowd_ignore)` -> oracle shards on the prework outputs."""

    @lru_cache(maxsize=None)
    def get(dataset: str, panoptic: bool, crowd_ignore: bool):
        return oracle.all_shards(str(synthetic(dataset).prepared), panoptic, crowd_ignore)

    return get


@pytest.fixture(scope="session")
def converted(synthetic, tmp_path_factory, csconv_run):
    """`converted(dataset, source_root, args, in_subprocess)` -> output dir, run once per key.

    source_root is 'raw' (the bare synthetic download) or 'prepared' (the prework copy).
    """
    cache: dict[tuple, Path] = {}

    def get(dataset: str, source_root: str, args: tuple[str, ...], in_subprocess: bool) -> Path:
        key = (dataset, source_root, args, in_subprocess)
        if key not in cache:
            root = getattr(synthetic(dataset), source_root)
            out = tmp_path_factory.mktemp(f"out-{dataset}")
            argv = [f"--cityscapes_root={root}", f"--output_dir={out}", *args]
            if not in_subprocess:
                argv += ["--workers", "1", "--quiet"]
            csconv_run(argv, in_subprocess=in_subprocess)
            cache[key] = out
        return cache[key]

    return get


def assert_same_records(out_dir: Path, want_shards: dict, tfrecords) -> None:
    """Same shard files, same record count per shard, field-for-field equal records."""
    got_files = sorted(p.name for p in out_dir.glob("*.tfrecord"))
    assert got_files == sorted(want_shards), "shard file names differ"
    for name, want_records in sorted(want_shards.items()):
        path = out_dir / name
        if not want_records:
            assert path.stat().st_size == 0, f"{name}: empty shard should be 0 bytes, is {path.stat().st_size}"
        got_records = tfrecords.read(path)
        assert len(got_records) == len(want_records), f"{name}: record count"
        for i, (got, want) in enumerate(zip(got_records, want_records)):
            where = f"{name} record {i} ({want.filename.decode()})"
            assert got["image/filename"] == want.filename, where
            assert digest(got["image/encoded"]) == digest(want.image), f"{where}: image/encoded"
            assert got["image/format"] == want.format, where
            assert (got["image/height"], got["image/width"]) == (want.height, want.width), where
            assert got["image/channels"] == want.channels == 3, where
            if want.label is None:
                assert got["keys"] == IMAGE_KEYS, f"{where}: features"
                assert got["image/segmentation/class/encoded"] == b"", where
                continue
            assert got["keys"] == IMAGE_KEYS | LABEL_KEYS, f"{where}: features"
            label = got["image/segmentation/class/encoded"]
            assert got["image/segmentation/class/format"] == want.label_format, where
            if want.label_format == b"raw":
                assert len(label) == want.height * want.width * 4, where
                got_array = tfrecords.raw_label(label, want.height, want.width)
                want_array = np.frombuffer(want.label, dtype="<i4").reshape(want.height, want.width)
                if not np.array_equal(got_array, want_array):
                    bad = np.argwhere(got_array != want_array)
                    y, x = bad[0]
                    pytest.fail(
                        f"{where}: panoptic label differs at {len(bad)} pixels, "
                        f"first at (y={y}, x={x}): got {got_array[y, x]}, expected {want_array[y, x]}"
                    )
            else:
                assert want.label_format == b"png"
                got_pixels = tfrecords.png_label(label)
                want_pixels = tfrecords.png_label(want.label)
                assert got_pixels.shape == want_pixels.shape, where
                assert got_pixels.dtype == want_pixels.dtype, where
                if not np.array_equal(got_pixels, want_pixels):
                    pytest.fail(f"{where}: semantic label differs at {int((got_pixels != want_pixels).sum())} pixels")
                # DeepLab2 stores the prework's PNG as it is: the same pixels are not enough.
                assert digest(label) == digest(want.label), f"{where}: semantic label PNG bytes"


# --- record identity across tasks, crowd settings, sources, spellings -------------------

# id -> (source root, extra args, panoptic, treat_crowd_as_ignore, run as a subprocess)
CASES = {
    "panoptic-defaults-cli": ("raw", (), True, True, True),
    "panoptic-explicit-true": ("raw", ("--create_panoptic_data=true", "--treat_crowd_as_ignore=true"), True, True, False),
    "panoptic-crowd=false": ("raw", ("--treat_crowd_as_ignore=false",), True, False, False),
    "panoptic-notreat-cli": ("raw", ("--notreat_crowd_as_ignore",), True, False, True),
    "semantic": ("raw", ("--create_panoptic_data=false",), False, True, False),
    "semantic-nocreate-crowd=false": ("raw", ("--nocreate_panoptic_data", "--treat_crowd_as_ignore=false"), False, False, False),
    "prepared-panoptic": ("prepared", ("--source", "prepared"), True, True, False),
    "prepared-panoptic-notreat-cli": ("prepared", ("--source=prepared", "--notreat_crowd_as_ignore"), True, False, True),
    "prepared-semantic": ("prepared", ("--source", "prepared", "--create_panoptic_data=false"), False, True, False),
}
TINY_CASES = ["panoptic-defaults-cli", "panoptic-crowd=false", "semantic", "prepared-panoptic", "prepared-semantic"]
PARAMS = [pytest.param("main", case, id=f"main-{case}") for case in CASES] + [
    pytest.param("tiny", case, id=f"tiny-{case}") for case in TINY_CASES
]


@pytest.mark.parametrize("dataset, case", PARAMS)
def test_records_match_reference(dataset, case, converted, expected, tfrecords):
    """All three splits, every shard, every field, against the oracle on the prework outputs."""
    source_root, args, panoptic, crowd_ignore, in_subprocess = CASES[case]
    out = converted(dataset, source_root, args, in_subprocess)
    assert_same_records(out, expected(dataset, panoptic, crowd_ignore), tfrecords)


def test_deeplab2_command_line_is_a_drop_in(synthetic, tmp_path, expected, tfrecords):
    """DeepLab2's own spelling, verbatim, through the console script."""
    root = synthetic("main").raw
    out = tmp_path / "out"
    run_csconv_subprocess([f"--cityscapes_root={root}", f"--output_dir={out}", "--create_panoptic_data=false"])
    assert_same_records(out, expected("main", False, True), tfrecords)


def test_crowd_setting_matters_on_this_data(expected):
    """Guard: the synthetic set has crowd regions, so the two crowd settings give different labels."""
    ignore, keep = expected("main", True, True), expected("main", True, False)
    differing = sum(
        a.label != b.label for name in ignore for a, b in zip(ignore[name], keep[name]) if a.label is not None
    )
    assert differing > 0


def test_empty_shards_exist_with_zero_bytes(converted, tfrecords):
    """13 train frames: 2 per shard, shards 7..9 empty; 3 val and 2 test frames: 1 per shard."""
    out = converted("main", "raw", (), True)
    counts = {p.name: len(tfrecords.read(p)) for p in out.glob("*.tfrecord")}
    assert len(counts) == 30
    assert [counts[f"train-{k:05d}-of-00010.tfrecord"] for k in range(10)] == [2, 2, 2, 2, 2, 2, 1, 0, 0, 0]
    assert [counts[f"val-{k:05d}-of-00010.tfrecord"] for k in range(10)] == [1, 1, 1] + [0] * 7
    assert [counts[f"test-{k:05d}-of-00010.tfrecord"] for k in range(10)] == [1, 1] + [0] * 8
    for name, count in counts.items():
        if count == 0:
            assert (out / name).stat().st_size == 0, name


def test_order_is_by_full_path(synthetic, converted, tfrecords):
    """weimar/weimar_... sorts before weimar0/weimar0_... by path, though not by file name."""
    out = converted("main", "raw", (), True)
    names = [
        r["image/filename"].decode()
        for k in range(10)
        for r in tfrecords.read(out / f"train-{k:05d}-of-00010.tfrecord")
    ]
    by_path = sorted(str(p) for p in _images(synthetic("main").raw, "train"))
    assert names == [Path(p).name[: -len("_leftImg8bit.png")] for p in by_path]
    assert names != sorted(names), "guard: the data should make path order and name order differ"
    assert names.index("weimar_000000_000019") < names.index("weimar0_000000_000019")


def _images(root: Path, split: str) -> list[Path]:
    return list((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))


def test_non_rgb_images_are_reencoded_and_rgb_copied(synthetic, converted, tfrecords):
    """Grayscale, palette and RGBA leftImg8bit become RGB PNGs; RGB files are copied byte for byte."""
    root = synthetic("main").raw
    out = converted("main", "raw", (), True)
    by_name = {}
    for path in out.glob("*.tfrecord"):
        for record in tfrecords.read(path):
            by_name[record["image/filename"].decode()] = record
    modes = set()
    for split in ("train", "val", "test"):
        for image_path in _images(root, split):
            data = image_path.read_bytes()
            source = Image.open(io.BytesIO(data))
            modes.add(source.mode)
            record = by_name[image_path.name[: -len("_leftImg8bit.png")]]
            if source.mode == "RGB":
                assert record["image/encoded"] == data, image_path.name
            else:
                stored = Image.open(io.BytesIO(record["image/encoded"]))
                assert stored.format == "PNG" and stored.mode == "RGB", image_path.name
                assert np.array_equal(np.asarray(stored), np.asarray(source.convert("RGB"))), image_path.name
            assert (record["image/height"], record["image/width"]) == (source.height, source.width)
    assert {"RGB", "L", "P", "RGBA"} <= modes, f"guard: synthetic modes were {modes}"


# --- semantic labels are drawn from polygons, not remapped from labelIds ---------------

def _label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    from cityscapesscripts.helpers.labels import id2label

    table = np.full(256, 255, dtype=np.uint8)
    for label_id, label in id2label.items():
        if label_id >= 0:
            table[label_id] = label.trainId if 0 <= label.trainId < 255 else 255
    return table[label_ids]


def test_semantic_label_is_the_polygon_drawing(synthetic, converted, tfrecords):
    """Default semantic labels equal csCreateTrainIdLabelImgs' PNG even where the shipped
    labelIds disagree along polygon edges; `--source labelids` follows the labelIds there."""
    roots = synthetic("main")
    default = converted("main", "raw", ("--create_panoptic_data=false",), False)
    from_ids = converted("main", "raw", ("--create_panoptic_data=false", "--source", "labelids"), False)

    def labels(out: Path) -> dict[str, np.ndarray]:
        found = {}
        for path in out.glob("*.tfrecord"):
            for record in tfrecords.read(path):
                if record["image/segmentation/class/format"] == b"png":
                    found[record["image/filename"].decode()] = tfrecords.png_label(
                        record["image/segmentation/class/encoded"]
                    )
        return found

    default_labels, ids_labels = labels(default), labels(from_ids)
    assert set(default_labels) == set(ids_labels) and len(default_labels) == 16
    edge_pixels = 0
    for split in ("train", "val"):
        for gt in (roots.prepared / "gtFine" / split).glob("*/*_gtFine_labelTrainIds.png"):
            stem = gt.name[: -len("_gtFine_labelTrainIds.png")]
            reference = np.asarray(Image.open(gt))
            remapped = _label_ids_to_train_ids(np.asarray(Image.open(str(gt).replace("labelTrainIds", "labelIds"))))
            edges = reference != remapped
            edge_pixels += int(edges.sum())
            assert np.array_equal(default_labels[stem], reference), f"{stem}: default semantic label"
            assert np.array_equal(ids_labels[stem], remapped), f"{stem}: --source labelids label"
            assert not np.array_equal(ids_labels[stem][edges], reference[edges]) or not edges.any()
    assert edge_pixels > 0, "guard: synthetic labelIds should differ from the polygon drawing somewhere"


def test_labelids_source_is_offered():
    done = subprocess.run([console_script("csconv"), "convert", "--help"], capture_output=True, text=True,
                          env=subprocess_env())
    assert done.returncode == 0
    assert "labelids" in done.stdout


# --- parallelism -------------------------------------------------------------------------

@pytest.mark.parametrize("task_args", [(), ("--create_panoptic_data=false",)], ids=["panoptic", "semantic"])
def test_two_workers_write_byte_identical_shards(synthetic, tmp_path, task_args):
    root = synthetic("main").raw
    outs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        run_csconv_subprocess([f"--cityscapes_root={root}", f"--output_dir={out}", "--workers", str(workers), *task_args])
        outs[workers] = {p.name: p.read_bytes() for p in sorted(out.glob("*.tfrecord"))}
    assert len(outs[1]) == 30
    assert outs[1].keys() == outs[2].keys()
    for name in outs[1]:
        assert outs[1][name] == outs[2][name], f"{name}: --workers 2 differs from --workers 1"


# --- split sizes -----------------------------------------------------------------------

def test_split_size_warning(synthetic, tmp_path):
    root = synthetic("tiny").raw
    done = run_csconv_subprocess([f"--cityscapes_root={root}", f"--output_dir={tmp_path / 'out'}"])
    warnings = [line for line in done.stderr.splitlines() if "warning" in line.lower()]
    for split, count, official in (("train", 2, 2975), ("val", 1, 500), ("test", 1, 1525)):
        assert any(split in line and str(count) in line and str(official) in line for line in warnings), (
            f"no size warning for {split}:\n{done.stderr}"
        )
    assert len(list((tmp_path / "out").glob("*.tfrecord"))) == 30


@pytest.mark.parametrize("flag", ["--strict_sizes", "--strict_sizes=true", "--strict-sizes"])
def test_strict_sizes_refuses_with_one_line(synthetic, tmp_path, flag):
    root = synthetic("tiny").raw
    done = run_csconv_subprocess(
        [f"--cityscapes_root={root}", f"--output_dir={tmp_path / 'out'}", flag], check=False
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("csconv: error:") and "2975" in lines[0], lines[0]
    assert "Traceback" not in done.stderr


# --- no TensorFlow at conversion time ------------------------------------------------------

def test_modules_do_not_import_tensorflow():
    code = (
        "import csconv.cli, csconv.cli.convert, csconv.pipeline.convert, csconv.sinks.tfrecord, sys; "
        "assert 'tensorflow' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("task_args", [(), ("--create_panoptic_data=false",)], ids=["panoptic", "semantic"])
def test_conversion_never_imports_tensorflow(synthetic, tmp_path, task_args):
    """A whole conversion, parent and forked workers, with -X importtime watching every import."""
    root = synthetic("main").raw
    out = tmp_path / "out"
    argv = [f"--cityscapes_root={root}", f"--output_dir={out}", "--workers", "2", *task_args]
    code = (
        "import sys\n"
        "from csconv.cli import main\n"
        f"rc = main({argv!r})\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=subprocess_env()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imports = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert any("csconv.pipeline.convert" in line for line in imports), "guard: -X importtime produced no report"
    assert not [line for line in imports if "tensorflow" in line], "tensorflow was imported during conversion"
    assert len(list(out.glob("*.tfrecord"))) == 30
