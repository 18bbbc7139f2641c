"""Platforms that lack Linux's calls: the conversion still runs and writes the same bytes.

macOS has no os.fdatasync, os.O_DIRECT nor os.posix_fadvise; Windows has no fcntl
(and no pwrite); NFS may refuse flock. Each is simulated on Linux by taking the call
away in a real `csconv` process (a bootstrap run with `python -c`) or, for a flock that
fails, in this process; the output must equal a normal run's, file for file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from csconv import cli
from csconv.storage import local as output

from conftest import run_csconv_subprocess, subprocess_env

LOCK_NAME = ".csconv.lock"  # the README names it
SIZES = {"train": 5, "val": 2, "test": 1}
ARGS = ("--num_shards", "2", "--quiet")

# The calls macOS lacks, taken away before csconv is imported.
MACOS = """
import os, sys
for name in ("fdatasync", "O_DIRECT", "posix_fadvise", "sync_file_range"):
    if hasattr(os, name):
        delattr(os, name)
from csconv.cli import main
sys.exit(main(sys.argv[1:]))
"""

# No fcntl module (nor pwrite); msvcrt does not exist here either, so csconv must
# fall back to its portable lock file.
WINDOWS = """
import os, sys
sys.modules["fcntl"] = None
for name in ("fdatasync", "O_DIRECT", "posix_fadvise", "pwrite"):
    if hasattr(os, name):
        delattr(os, name)
from csconv.cli import main
code = main(sys.argv[1:])
assert sys.modules["fcntl"] is None
sys.exit(code)
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from csconv.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("platforms") / "cityscapes"
    generate_dataset(root, SIZES, width=64, height=32, seed=5)
    return root


@pytest.fixture(scope="module")
def normal(root, tmp_path_factory):
    """Every file of a normal run's output folder, by name."""
    out = tmp_path_factory.mktemp("normal") / "out"
    run_csconv_subprocess(["--cityscapes_root", str(root), "--output_dir", str(out), "--workers", "2", *ARGS])
    return snapshot(out)


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def run_simulated(bootstrap: str, root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", bootstrap, "--cityscapes_root", str(root), "--output_dir", str(out), *ARGS, *extra]
    return subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_without_fdatasync_o_direct_and_fadvise_as_on_macos(root, normal, tmp_path, workers):
    out = tmp_path / "out"
    done = run_simulated(MACOS, root, out, "--workers", workers)
    assert done.returncode == 0, done.stderr
    assert snapshot(out) == normal


def test_without_fcntl_as_on_windows(root, normal, tmp_path):
    out = tmp_path / "out"
    done = run_simulated(WINDOWS, root, out, "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert snapshot(out) == normal  # the lock file is gone too


def test_without_fcntl_a_lock_file_of_a_live_process_stops_the_run(root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{os.getpid()}\n")
    done = run_simulated(WINDOWS, root, out, "--workers", "1")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if not line.startswith("csconv: warning:")]
    assert errors == [f"csconv: error: {out}: another csconv run is writing to this folder"]
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # not another run's to remove


def test_without_fcntl_a_lock_file_left_by_a_killed_run_is_taken_over(root, normal, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_NAME).write_text(gone.stdout)
    done = run_simulated(WINDOWS, root, out, "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert snapshot(out) == normal


def test_buffered_write_back_without_posix_fadvise(tmp_path, monkeypatch):
    # Shards under 16 MiB never reach the call that drops written pages, so this one
    # writes three staging blocks and flushes after each.
    monkeypatch.delattr(os, "posix_fadvise")
    monkeypatch.setattr(output, "_SYNC_EVERY", 1)
    data = np.random.default_rng(0).integers(0, 256, 3 * output._BLOCK, dtype=np.uint8).tobytes()
    shard = output.ShardFile(str(tmp_path), "a.bin", direct=False)
    try:
        shard.write(data)
        shard.commit()
    except BaseException:
        shard.abort()
        raise
    assert (tmp_path / "a.bin").read_bytes() == data


@pytest.mark.parametrize(
    "code", [errno.ENOLCK, errno.EBADF, errno.EOPNOTSUPP, errno.ENOSYS], ids=errno.errorcode.get
)
def test_a_folder_that_cannot_be_locked_as_on_nfs_is_converted_with_a_warning(
    root, normal, tmp_path, monkeypatch, capsys, code
):
    def flock(fd, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", flock)
    out = tmp_path / "out"
    rc = cli.main(["--cityscapes_root", str(root), "--output_dir", str(out), "--workers", "1", *ARGS])
    err = capsys.readouterr().err
    assert rc == 0, err
    expected = (
        f"csconv: warning: {out}: cannot lock the output folder ({os.strerror(code)}); "
        "make sure no other csconv run writes to it"
    )
    assert expected in err.splitlines()
    assert snapshot(out) == normal


def test_a_folder_locked_by_another_run_is_still_refused(root, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        rc = cli.main(["--cityscapes_root", str(root), "--output_dir", str(out), "--workers", "1", *ARGS])
    finally:
        os.close(fd)
    assert rc == 2
    assert f"csconv: error: {out}: another csconv run is writing to this folder" in capsys.readouterr().err
    assert list(out.iterdir()) == []
