"""`csconv prework` writes what the real cityscapesscripts prework writes, byte for byte.

The reference: csCreateTrainIdLabelImgs, csCreatePanopticImgs --use-train-id and
csCreatePanopticImgs, run on a copy of the same input (conftest.run_prework and
test_evalgt.run_reference). Every file csconv writes must be one of theirs with the same
bytes, and every file of theirs must be written, on synthetic frames and on the four
real ones, from the tree and from the zip archive. instanceTrainIds, which
csCreateTrainIdInstanceImgs cannot save on current Pillow, is compared pixel for pixel
with what its own drawing function computes in this process.

Runs that fork workers go through the real `csconv` console script (a subprocess);
only --workers 1 runs in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import console_script, run_prework
from test_archives import make_archives
from test_evalgt import run_reference
from test_real_frames import REAL, writable_copy

from csconv import cli
from csconv.core.prework import Kind
from csconv.prework.records import JOURNAL_NAME, MANIFEST_NAME
from csconv.synthetic import generate_dataset

SPLITS = ("train", "val", "test")


def tree_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def prework_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([console_script("csconv"), "prework", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, f"csconv prework exited {done.returncode}:\n{done.stderr}"
    return done


def reference_outputs(raw: Path, base: Path) -> dict[str, bytes]:
    """What the three reference tools write into a copy of `raw`: every file that is new."""
    reference = run_prework(raw, base / "reference")  # labelTrainIds + panoptic trainId
    splits = [s for s in SPLITS if any((raw / "gtFine" / s).glob("*/*_instanceIds.png"))]
    run_reference(reference, splits)  # csCreatePanopticImgs, original ids
    inputs = tree_files(raw)
    return {path: data for path, data in tree_files(reference).items() if path not in inputs}


def assert_same_outputs(ours: dict[str, bytes], expected: dict[str, bytes]) -> None:
    assert sorted(ours) == sorted(expected), "csconv and cityscapesscripts wrote different sets of files"
    differing = [path for path in expected if ours[path] != expected[path]]
    assert not differing, f"{len(differing)} file(s) differ from the reference's bytes, e.g. {differing[:3]}"


def new_files(root: Path, inputs: dict[str, bytes]) -> dict[str, bytes]:
    """The files a run added under root: neither inputs nor the manifest."""
    return {p: d for p, d in tree_files(root).items() if p not in inputs and p != MANIFEST_NAME}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A small synthetic tree (train frame 1 is crowded, frame 2 has no thing; the test split
    has placeholder labels, which the reference writes files for too), the reference's
    output on it, and the two archives."""
    base = tmp_path_factory.mktemp("prework")
    raw = base / "raw"
    generate_dataset(raw, {"train": 4, "val": 2, "test": 2}, width=256, height=128, seed=11)
    expected = reference_outputs(raw, base)
    assert any("/test/" in path for path in expected) and any(path.endswith(".json") for path in expected)
    make_archives(raw, base / "download")
    return raw, expected, base / "download"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    if not REAL.is_dir():
        pytest.skip(f"{REAL} is absent: the real Cityscapes frames are not redistributable and live outside the repository")
    base = tmp_path_factory.mktemp("prework-real")
    raw = writable_copy(REAL, base / "raw")
    expected = reference_outputs(raw, base)
    make_archives(raw, base / "download")
    return raw, expected, base / "download"


@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_tree_gets_the_reference_files(data, request, tmp_path):
    raw, expected, _ = request.getfixturevalue(data)
    ours = tmp_path / "ours"
    shutil.copytree(raw, ours)
    prework_cli("--cityscapes_root", str(ours), "--workers", "2", "--quiet")
    assert_same_outputs(new_files(ours, tree_files(raw)), expected)
    manifest = json.loads((ours / MANIFEST_NAME).read_text())
    assert sorted(manifest["files"]) == sorted(expected)
    assert not (ours / JOURNAL_NAME).exists()


@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_archive_with_output_root_gets_the_reference_files(data, request, tmp_path):
    _, expected, download = request.getfixturevalue(data)
    out = tmp_path / "out"
    prework_cli("--cityscapes_root", str(download), "--output_root", str(out), "--workers", "2", "--quiet")
    assert_same_outputs(new_files(out, {}), expected)


def test_archive_needs_an_output_root(synthetic):
    _, _, download = synthetic
    done = prework_cli("--cityscapes_root", str(download), check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"csconv: error: {download / 'gtFine_trainvaltest.zip'}: the annotations are read from the archive, "
        "so give --output_root (cityscapesscripts writes into the unpacked tree)"
    ]


def instance_train_ids_the_tools_way(polygons: Path) -> np.ndarray:
    """What csCreateTrainIdInstanceImgs computes for a polygons file, before the save that
    current Pillow refuses: its own drawing function, in this process."""
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage

    annotation = Annotation()
    annotation.fromJsonFile(str(polygons))
    return np.asarray(createInstanceImage(annotation, "trainIds"))


@pytest.mark.parametrize("data", ["synthetic", "real"])
def test_instance_train_ids_are_the_tools_pixels(data, request, tmp_path):
    raw, _, _ = request.getfixturevalue(data)
    out = tmp_path / "out"
    assert cli.main(["prework", "--cityscapes_root", str(raw), "--output_root", str(out),
                     "--make", "instanceTrainIds", "--workers", "1", "--quiet"]) == 0
    polygons = sorted(raw.glob("gtFine/*/*/*_gtFine_polygons.json"))
    written = sorted(out.glob("gtFine/*/*/*_gtFine_instanceTrainIds.png"))
    assert [p.relative_to(out) for p in written] == [
        p.relative_to(raw).with_name(p.name.replace("_polygons.json", "_instanceTrainIds.png")) for p in polygons
    ]
    instances = 0
    for source, png in zip(polygons, written):
        with Image.open(png) as image:
            assert image.mode == "I;16", f"{png.name}: expected a 16-bit grayscale PNG, got mode {image.mode}"
            ours = np.asarray(image).astype(np.int64)
        theirs = instance_train_ids_the_tools_way(source)
        assert ours.shape == theirs.shape
        assert np.array_equal(ours, theirs), f"{png.name}: {np.count_nonzero(ours != theirs)} pixels differ"
        instances += len(np.unique(theirs[theirs >= 1000]))
    assert instances > 10, "too few instances drawn for the comparison to mean much"


def test_workers_1_and_2_write_the_same_bytes(synthetic, tmp_path):
    _, download_expected, download = synthetic
    one, two = tmp_path / "one", tmp_path / "two"
    make = ["--make", ",".join(kind.value for kind in Kind)]
    assert cli.main(["prework", "--cityscapes_root", str(download), "--output_root", str(one), *make,
                     "--workers", "1", "--quiet"]) == 0
    prework_cli("--cityscapes_root", str(download), "--output_root", str(two), *make, "--workers", "2", "--quiet")
    assert tree_files(one) == tree_files(two)  # the manifest too


def test_existing_files_are_refused_unless_overwrite(synthetic, tmp_path):
    raw, expected, _ = synthetic
    ours = tmp_path / "ours"
    shutil.copytree(raw, ours)
    prework_cli("--cityscapes_root", str(ours), "--workers", "2", "--quiet")
    label = ours / "gtFine/test/berlin/berlin_000000_000019_gtFine_labelTrainIds.png"
    label.write_bytes(b"edited by hand")
    before = tree_files(ours)

    done = prework_cli("--cityscapes_root", str(ours), "--workers", "2", check=False)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    first = sorted(p for p in expected if p.startswith("gtFine/train/") and p.endswith("_labelTrainIds.png"))[0]
    assert line == (
        f"csconv: error: {ours / first}: already exists ({len(expected)} of the {len(expected)} files this run "
        "writes are there); pass --overwrite to replace them, or --resume to keep those an interrupted run completed"
    )
    assert tree_files(ours) == before, "a refused run changed files"

    prework_cli("--cityscapes_root", str(ours), "--workers", "2", "--overwrite", "--quiet")
    assert_same_outputs(new_files(ours, tree_files(raw)), expected)


def test_overwrite_and_resume_exclude_each_other(synthetic, tmp_path):
    raw, _, _ = synthetic
    done = prework_cli("--cityscapes_root", str(raw), "--output_root", str(tmp_path), "--overwrite", "--resume",
                       check=False)
    assert (done.returncode, done.stderr) == (2, "csconv: error: --overwrite and --resume exclude each other\n")


# --- interruption -----------------------------------------------------------------------

def many_frames_and_their_output(tmp_path_factory, folder: str, sizes: dict[str, int], width: int, height: int):
    """A synthetic set with ten times `sizes` frames (each frame's gtFine files hard-linked
    under nine more names, so a long run costs little to make), and a clean prework run's
    output of it: (root, {relative path: bytes})."""
    base = tmp_path_factory.mktemp(folder)
    root = base / "cityscapes"
    generate_dataset(root, sizes, width=width, height=height, seed=2)
    for path in sorted((root / "gtFine").glob("*/*/*_gtFine_*")):
        city, seq, rest = path.name.split("_", 2)
        for k in range(1, 10):
            os.link(path, path.with_name(f"{city}_{int(seq) + 1000 * k:06d}_{rest}"))
    clean = base / "clean"
    prework_cli("--cityscapes_root", str(root), "--output_root", str(clean), "--workers", "2", "--quiet")
    return root, tree_files(clean)


@pytest.fixture(scope="module")
def many_frames(tmp_path_factory):
    """Enough frames (300) that a run takes a second or two, and that run's output."""
    return many_frames_and_their_output(tmp_path_factory, "prework-many", {"train": 24, "val": 6}, 384, 192)


def start_and_wait(root: Path, out: Path, frames: int) -> subprocess.Popen:
    """A 2-worker run, once its journal records `frames` completed frames."""
    command = [console_script("csconv"), "prework", "--cityscapes_root", str(root), "--output_root", str(out),
               "--workers", "2", "--quiet"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    journal = out / JOURNAL_NAME
    deadline = time.monotonic() + 60
    while not (journal.exists() and journal.read_bytes().count(b'"frame"') >= frames):
        assert process.poll() is None, f"the run ended before {frames} frames were complete"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return process


def partial_files(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".*.partial")]


@pytest.mark.parametrize("signum, frames", [(signal.SIGINT, 20), (signal.SIGTERM, 150), (signal.SIGKILL, 100)])
def test_interrupted_run_resumes_to_the_clean_bytes(many_frames, tmp_path, signum, frames):
    root, clean = many_frames
    out = tmp_path / "out"
    process = start_and_wait(root, out, frames)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode in (128 + signum, -signal.SIGKILL), stderr
    for path, data in tree_files(out).items():  # nothing half-written under a final name
        if not Path(path).name.startswith("."):  # temporaries (SIGKILL leaves them) sit in subfolders too
            assert data == clean[path], f"{path} differs from the clean run's"
    assert MANIFEST_NAME not in tree_files(out), "the manifest of an unfinished run"
    if signum != signal.SIGKILL:
        assert not partial_files(out)
        [line] = stderr.splitlines()
        assert line.startswith(f"csconv: interrupted by {signal.Signals(signum).name}: ")
        assert line.endswith(f" of 300 frames complete in {out} (kept for --resume), temporary files removed")
        assert frames <= int(line.split(": ")[2].split()[0]) < 300

    done = prework_cli("--cityscapes_root", str(root), "--output_root", str(out), "--workers", "2", "--resume")
    kept = int(done.stderr.splitlines()[-1].split("kept ")[1].split()[0])
    assert kept >= 3 * frames  # three files a frame
    assert tree_files(out) == clean  # every file and the manifest, byte for byte; no journal, no temporaries


def child_pids(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except (OSError, ValueError):
            continue
        # The command name (field 2) may hold spaces: the parent pid is the 2nd field after its ')'.
        if entry.isdigit() and int(stat[stat.rindex(b")") + 2 :].split()[1]) == parent:
            found.append(int(entry))
    return sorted(found)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes in /proc")
def test_killed_worker_is_a_one_line_error_and_resume_finishes(many_frames, tmp_path):
    root, clean = many_frames
    out = tmp_path / "out"
    process = start_and_wait(root, out, 50)
    children = child_pids(process.pid)
    assert children, "no worker process found"
    os.kill(children[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    [line] = stderr.splitlines()
    assert line.startswith(f"csconv: error: {out}: a worker process died (killed by SIGKILL; out of memory?)")
    assert line.endswith("of 300 frames were completed and are kept for --resume)")
    assert not partial_files(out)
    prework_cli("--cityscapes_root", str(root), "--output_root", str(out), "--workers", "2", "--resume", "--quiet")
    assert tree_files(out) == clean


# --- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("suffix, damage, problem", [
    ("_gtFine_polygons.json", lambda data: data[: len(data) // 2], "malformed polygons JSON"),
    ("_gtFine_instanceIds.png", lambda data: data[: len(data) // 2], "truncated PNG"),
])
def test_bad_input_is_one_line_naming_the_file(synthetic, tmp_path, suffix, damage, problem):
    raw, _, _ = synthetic
    root = tmp_path / "root"
    shutil.copytree(raw, root)
    bad = sorted(root.glob(f"gtFine/train/*/*{suffix}"))[2]
    bad.write_bytes(damage(bad.read_bytes()))
    out = tmp_path / "out"
    done = prework_cli("--cityscapes_root", str(root), "--output_root", str(out), "--workers", "2", check=False)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"csconv: error: {bad}: {problem}"), line
    assert not partial_files(out)
    assert not (out / MANIFEST_NAME).exists()


def test_bad_make_is_one_line(synthetic, tmp_path):
    raw, _, _ = synthetic
    done = prework_cli("--cityscapes_root", str(raw), "--output_root", str(tmp_path), "--make", "labelTrainIds,colour",
                       check=False)
    assert done.returncode == 2
    assert done.stderr == (
        "csconv: error: --make takes a comma-separated list of labelTrainIds, panoptic_trainId, panoptic, "
        "instanceTrainIds, got 'labelTrainIds,colour'\n"
    )
