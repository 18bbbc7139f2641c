"""The output folder: what csconv counts as its own, what it refuses, and output-side OS errors.

Same small synthetic tree as test_failures.py (train 13, val 3, test 2 frames, 64x32),
run in-process with --workers 1. Read-only and inode-starved file systems are real
tmpfs mounts, made when the test runs as root with the right to mount (as here and in
CI), and skipped otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from csconv.pipeline.manifest import MANIFEST_NAME
from test_failures import SIZES, assert_one_line_error, pristine, root, run  # noqa: F401  (fixtures)


def names(folder: Path) -> set[str]:
    return set(os.listdir(folder))


def count_records(out: Path, split: str, sink: str = "tfrecord") -> int:
    from csconv.plugins import get_sink

    reader = get_sink(sink)
    return sum(
        len(list(reader.read_shard(str(path))))
        for path in sorted(out.iterdir())
        if reader.is_shard_name(path.name) and path.name.startswith(f"{split}-")
    )


# --- shards of another layout ---------------------------------------------------------


@pytest.mark.parametrize("sink, old_only", [
    ("tfrecord", "train-00005-of-00006.tfrecord"),
    ("webdataset", "train-00005.tar"),
])
def test_shards_of_another_layout_are_refused_and_overwrite_removes_them(capsys, root, tmp_path, sink, old_only):
    out = tmp_path / "out"
    assert run(capsys, root, out, "--sink", sink, "--num_shards", "6")[0] == 0
    assert old_only in names(out)

    for flags in ([], ["--resume"]):  # a plain run and --resume both refuse the other layout
        code, err = run(capsys, root, out, "--sink", sink, "--num_shards", "3", *flags)
        assert_one_line_error(code, err, str(out))
        assert old_only in names(out)

    code, err = run(capsys, root, out, "--sink", sink, "--num_shards", "3", "--overwrite")
    assert code == 0, err
    assert old_only not in names(out)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    listed = {s["name"] for split in manifest["splits"].values() for s in split["shards"]}
    assert names(out) == listed | {MANIFEST_NAME}
    assert count_records(out, "train", sink) == SIZES["train"]  # not 2 x 13 from two layouts


def test_completion_records_of_an_interrupted_run_of_another_layout_are_csconv_files(capsys, root, tmp_path):
    out = tmp_path / "out"
    assert run(capsys, root, out, "--num_shards", "6")[0] == 0
    # What an interrupted run leaves: shards and their completion records, no manifest.
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            (out / f".{shard['name']}.done").write_text(json.dumps(shard))
    (out / MANIFEST_NAME).unlink()
    code, err = run(capsys, root, out, "--num_shards", "3")
    assert_one_line_error(code, err, "already holds", "--overwrite")
    code, err = run(capsys, root, out, "--num_shards", "3", "--resume")
    assert_one_line_error(code, err, "this run would not write", "--overwrite")
    assert run(capsys, root, out, "--num_shards", "3", "--overwrite")[0] == 0
    assert not [n for n in names(out) if n.startswith(".")]
    assert count_records(out, "train") == SIZES["train"]


def test_a_run_with_another_sink_in_the_same_folder_is_refused(capsys, root, tmp_path):
    out = tmp_path / "out"
    assert run(capsys, root, out, "--sink", "webdataset")[0] == 0
    code, err = run(capsys, root, out, "--sink", "tfrecord")
    assert_one_line_error(code, err, "already holds")
    assert run(capsys, root, out, "--sink", "tfrecord", "--overwrite")[0] == 0
    assert not [n for n in names(out) if n.endswith(".tar")]


# --- the user's own files ---------------------------------------------------------------


def test_files_of_the_user_are_never_removed(capsys, root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    mine = {
        ".notes.partial": b"mine",  # looks like a temporary name, but not of a csconv file
        ".train.partial": b"mine",
        "train-00003-of-00010.tfrecord.bak": b"mine",
        "README": b"mine",
    }
    for name, data in mine.items():
        (out / name).write_bytes(data)
    (out / ".train-00003-of-00010.tfrecord.partial").write_bytes(b"left by a killed run")
    for flags in ([], ["--overwrite"], ["--resume"]):
        code, err = run(capsys, root, out, *flags)
        assert code == 0, (flags, err)
        for name, data in mine.items():
            assert (out / name).read_bytes() == data, (flags, name)
    assert ".train-00003-of-00010.tfrecord.partial" not in names(out)


# --- --splits --------------------------------------------------------------------------


def test_a_split_named_twice_is_converted_once(capsys, root, tmp_path):
    twice, once = tmp_path / "twice", tmp_path / "once"
    assert run(capsys, root, twice, "--splits", "train,val,train")[0] == 0
    assert run(capsys, root, once, "--splits", "train,val")[0] == 0
    assert (twice / MANIFEST_NAME).read_bytes() == (once / MANIFEST_NAME).read_bytes()
    manifest = json.loads((twice / MANIFEST_NAME).read_text())
    assert len(manifest["splits"]["train"]["shards"]) == 10
    assert manifest["splits"]["train"]["records"] == SIZES["train"]


# --- output-side OS errors ---------------------------------------------------------------


def test_output_dir_naming_a_file(capsys, root, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("mine")
    code, err = run(capsys, root, target)
    assert_one_line_error(code, err, str(target), "names a file, not a folder")
    assert target.read_text() == "mine"


def test_output_dir_that_cannot_be_created(capsys, root, tmp_path):
    (tmp_path / "a-file").write_text("mine")
    target = tmp_path / "a-file" / "out"
    code, err = run(capsys, root, target)
    assert_one_line_error(code, err, str(target), "cannot create the output folder")


@contextlib.contextmanager
def tmpfs(mount_point: Path, options: str):
    """A real tmpfs mounted with `options`; skips the test where mounting is not allowed."""
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_read_only_file_system(capsys, root, tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        code, err = run(capsys, root, mount)
        assert_one_line_error(code, err, str(mount), "read-only")
        code, err = run(capsys, root, mount / "sub")
        assert_one_line_error(code, err, str(mount / "sub"), "cannot create the output folder", "read-only")


def test_no_inodes_left(capsys, root, tmp_path):
    # 12 inodes: the root folder and a few shards fit, the train split's 10 do not.
    with tmpfs(tmp_path / "few", "size=64m,nr_inodes=12") as mount:
        code, err = run(capsys, root, mount)
        line = assert_one_line_error(code, err, str(mount), "cannot create the temporary file", "no free inodes")
        assert "shards were completed and are kept for --resume" in line
        assert not [n for n in names(mount) if n.endswith(".partial")]


def test_rename_refused(capsys, root, tmp_path, monkeypatch):
    # The kernel refusing a rename (EXDEV, EPERM on some network file systems) cannot be
    # provoked on a local folder: the real os.replace runs for the first shards, then the
    # refusal is what os.replace raises.
    out = tmp_path / "out"
    real_replace, calls = os.replace, []

    def replace(source, target, *args, **kwargs):
        calls.append(target)
        if len(calls) > 3 and str(target).endswith(".tfrecord"):
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), source, None, target)
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    code, err = run(capsys, root, out)
    line = assert_one_line_error(code, err, str(out), "cannot rename its temporary file into place",
                                 "Operation not permitted")
    assert "(2 of 30 shards were completed and are kept for --resume)" in line
    assert not [n for n in names(out) if n.endswith(".partial")]
