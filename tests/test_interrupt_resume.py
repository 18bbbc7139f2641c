"""Interrupted runs: nothing half-written under a final name, and --resume ends byte-identical.

A real `csconv` process is killed (SIGKILL) or interrupted (SIGINT, SIGTERM) at random
instants between start and the measured length of a clean run, on a multi-shard
conversion; then `--resume` must finish the job with the bytes of a clean run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import sink_param
from csconv import cli
from csconv.pipeline.manifest import MANIFEST_NAME
from csconv.sinks.tfrecord import TFRecordSink
from csconv.inspection.verify import verify

SIZES = {"train": 30, "val": 6}  # generated; then each frame is hard-linked under COPIES names
COPIES = 10
ARGS = ("--splits=train,val", "--num_shards=10", "--quiet")


def csconv_command(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "csconv", "--cityscapes_root", str(root), "--output_dir", str(out), *ARGS, *extra]


def run_csconv(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(csconv_command(root, out, *extra), capture_output=True, text=True, timeout=120)


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A root big enough that a clean run takes a while, and the clean run's output + time."""
    from csconv.synthetic import generate_dataset

    base = tmp_path_factory.mktemp("interrupt")
    root = base / "cityscapes"
    generate_dataset(root, SIZES, width=384, height=192, seed=1)
    multiply_frames(root, COPIES)
    clean = base / "clean"
    started = time.monotonic()
    done = run_csconv(root, clean, "--workers=2")
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return root, clean, seconds


def multiply_frames(root: Path, copies: int) -> None:
    """More frames for free: hard-link every frame's files under other sequence numbers."""
    for top in ("leftImg8bit", "gtFine"):
        for path in sorted((root / top).glob("*/*/*_*_*_*")):
            city, seq, rest = path.name.split("_", 2)
            for k in range(1, copies):
                os.link(path, path.with_name(f"{city}_{int(seq) + 1000 * k:06d}_{rest}"))


def assert_no_partial_final_shard(out: Path, clean: dict[str, bytes]) -> None:
    """Every final-named shard parses completely and is exactly the clean run's shard."""
    sink = TFRecordSink()
    for path in out.iterdir():
        if path.name.endswith(".tfrecord"):
            list(sink.read_shard(str(path)))
            assert path.read_bytes() == clean[path.name], f"{path.name} differs from the clean run"


def assert_same_as_clean(out: Path, clean: dict[str, bytes]) -> None:
    assert snapshot(out) == clean  # every shard and the manifest, byte for byte; nothing else
    report = verify(str(out))
    assert report.ok, report.defects


def test_output_bytes_do_not_depend_on_workers(dataset, tmp_path):
    root, clean, _ = dataset
    done = run_csconv(root, tmp_path / "one", "--workers=1")
    assert done.returncode == 0, done.stderr
    assert snapshot(tmp_path / "one") == snapshot(clean)


@pytest.mark.parametrize("seed", range(12))
def test_killed_or_interrupted_run_resumes_to_the_clean_bytes(dataset, tmp_path, seed):
    root, clean_dir, clean_seconds = dataset
    clean = snapshot(clean_dir)
    rng = random.Random(seed)
    out = tmp_path / "out"
    signum = (signal.SIGKILL, signal.SIGINT, signal.SIGTERM)[seed % 3]
    delay = rng.uniform(0.1, 1.0) * clean_seconds

    process = subprocess.Popen(csconv_command(root, out, "--workers=2"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    sent = time.monotonic()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    stopped_after = time.monotonic() - sent
    assert stopped_after < 5, f"took {stopped_after:.1f} s to stop"
    code = process.returncode
    state = sorted(os.listdir(out)) if out.exists() else []
    print(f"seed {seed}: {signal.Signals(signum).name} after {delay:.2f}/{clean_seconds:.2f} s -> exit {code}, "
          f"{sum(n.endswith('.tfrecord') for n in state)} shards, {sum(n.endswith('.partial') for n in state)} partial")

    if out.exists():
        assert_no_partial_final_shard(out, clean)
        leftovers = [n for n in os.listdir(out) if n.endswith(".partial")]
        if signum != signal.SIGKILL and code == 128 + signum:
            assert not leftovers, leftovers  # cleaned up on the way out
            assert "shards complete" in stderr and "temporary files removed" in stderr
    if signum != signal.SIGKILL:
        # Finished before the signal, stopped by csconv, or (signal during interpreter
        # start-up, before csconv runs) killed by Python's default handling.
        assert code in (0, 128 + signum, -signum), (code, stderr)

    done = run_csconv(root, out, "--workers=2", "--resume")
    assert done.returncode == 0, done.stderr
    assert_same_as_clean(out, clean)


def test_sigterm_and_sigint_stop_promptly_and_clean_up(dataset, tmp_path):
    root, clean_dir, clean_seconds = dataset
    for signum in (signal.SIGTERM, signal.SIGINT):
        out = tmp_path / signal.Signals(signum).name
        process = subprocess.Popen(csconv_command(root, out, "--workers=2"), stderr=subprocess.PIPE, text=True)
        # Wait until the first shard is committed, so that the signal lands mid-run.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (out.exists() and any(n.endswith(".tfrecord") for n in os.listdir(out))):
            time.sleep(0.005)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=10)
        if process.returncode == 0:
            pytest.skip("the run finished before the signal landed")
        assert process.returncode == 128 + signum, stderr
        assert f"interrupted by {signal.Signals(signum).name}" in stderr
        assert not [n for n in os.listdir(out) if n.endswith(".partial")]
        assert MANIFEST_NAME not in os.listdir(out)


def test_resume_after_bad_input_keeps_completed_shards(dataset, tmp_path, capsys):
    """A run stopped by a bad frame: the shards written before it stay; fixed input + --resume finishes."""
    root_src, clean_dir, _ = dataset
    clean = snapshot(clean_dir)
    root = tmp_path / "root"
    shutil.copytree(root_src, root)
    bad = sorted((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))[-1]
    good = bad.read_bytes()
    bad.write_bytes(good[:-40])
    out = tmp_path / "out"
    common = ["--cityscapes_root", str(root), "--output_dir", str(out), *ARGS, "--workers=1"]

    assert cli.main(common) == 2
    err = capsys.readouterr().err
    assert "truncated PNG" in err and "kept for --resume" in err
    completed = sorted(n for n in os.listdir(out) if n.endswith(".tfrecord"))
    assert completed and "val-00009-of-00010.tfrecord" not in completed

    bad.write_bytes(good)
    assert cli.main(common) == 2  # without --resume the folder is refused
    assert "--resume" in capsys.readouterr().err

    # A kept shard must prove itself: damage one; it is redone, not kept.
    damaged = out / completed[0]
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x00")
    assert cli.main([*common[:-1], "--workers=1", "--resume"]) == 0
    assert_same_as_clean(out, clean)


def test_resume_with_other_options_redoes_everything(dataset, tmp_path):
    root, clean_dir, _ = dataset
    out = tmp_path / "out"
    shutil.copytree(clean_dir, out)
    done = run_csconv(root, out, "--workers=2", "--resume", "--create_panoptic_data=false")
    assert done.returncode == 0, done.stderr
    assert "kept" not in done.stderr
    semantic = tmp_path / "semantic"
    assert run_csconv(root, semantic, "--workers=2", "--create_panoptic_data=false").returncode == 0
    assert snapshot(out) == snapshot(semantic)
    # And resuming a finished run changes nothing.
    done = run_csconv(root, out, "--workers=2", "--resume", "--create_panoptic_data=false")
    assert done.returncode == 0, done.stderr
    assert snapshot(out) == snapshot(semantic)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["options"]["task"] == "semantic"


@pytest.mark.parametrize("sink", [sink_param(name) for name in ("parquet", "webdataset", "arrayrecord")])
def test_other_sinks_resume_and_keep_going_like_tfrecord(dataset, tmp_path, sink):
    """--resume after a SIGKILL, and --keep_going past a bad frame, for the non-reference sinks."""
    root_src, _, _ = dataset
    root = tmp_path / "root"
    shutil.copytree(root_src, root)
    clean_dir = tmp_path / "clean"
    started = time.monotonic()
    assert run_csconv(root, clean_dir, f"--sink={sink}", "--workers=2").returncode == 0
    clean = snapshot(clean_dir)
    assert any(name.endswith((".parquet", ".tar", ".array_record")) for name in clean), sorted(clean)

    out = tmp_path / "out"
    process = subprocess.Popen(csconv_command(root, out, f"--sink={sink}", "--workers=2"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill once a shard is committed, so that --resume has something to keep.
    deadline = started + 60
    while time.monotonic() < deadline and not (
        out.exists() and any(not n.startswith(".") and n != MANIFEST_NAME for n in os.listdir(out))
    ):
        time.sleep(0.005)
    process.kill()
    process.wait(timeout=30)
    done = run_csconv(root, out, f"--sink={sink}", "--workers=2", "--resume")
    assert done.returncode == 0, done.stderr
    assert_same_as_clean(out, clean)

    bad = sorted((root / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png"))[3]
    bad.write_bytes(bad.read_bytes()[:-40])
    kept_going = tmp_path / "kept-going"
    done = run_csconv(root, kept_going, f"--sink={sink}", "--workers=2", "--keep_going")
    assert done.returncode == 1, done.stderr
    assert "skipped 1 bad frame(s)" in done.stderr and str(bad) in done.stderr
    manifest = json.loads((kept_going / MANIFEST_NAME).read_text())
    assert [entry["path"] for entry in manifest["skipped"]] == [str(bad)]
    assert manifest["splits"]["train"]["records"] == manifest["splits"]["train"]["frames"] - 1
    report = verify(str(kept_going))
    assert report.ok, report.defects


# --- a worker that dies, and signals around it ------------------------------------------

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers' open files in /proc")


def child_pids(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after the parenthesised name
            kids.append(int(entry))
    return kids


def shards_being_written(pid: int) -> list[str]:
    """The shards whose temporary file the process has open."""
    names = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return names
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.endswith(".tfrecord.partial"):
            names.append(os.path.basename(target)[1 : -len(".partial")])
    return names


def stop_workers(process: subprocess.Popen) -> dict[int, list[str]]:
    """SIGSTOP every worker; pid -> the shards whose temporary file it has open."""
    stopped = {}
    for pid in child_pids(process.pid):
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        stopped[pid] = shards_being_written(pid)
    return stopped


def continue_workers(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def kill_a_worker(process: subprocess.Popen, out: Path, idle: bool, then=None) -> tuple[int, str | None] | None:
    """SIGKILL a worker once some shard is complete; (pid, the shard it was writing) or None.

    The workers are stopped while their open files are read, so that what each was doing
    is known. idle=False: kill a worker writing a shard. idle=True (with --num_shards=1):
    the worker writing the train shard is held stopped until the other one has written
    the val shard and waits for work, in the middle of reading the task queue, holding
    that queue's lock; that one is killed, and the writer held a while longer, so that
    its shard cannot be completed before csconv notices the death. `then()` is called
    right after the kill, the other workers still stopped.
    """
    deadline = time.monotonic() + 60
    held = None
    try:
        while time.monotonic() < deadline and process.poll() is None:
            names = set(os.listdir(out)) if out.exists() else set()
            if idle and held is None:
                stopped = stop_workers(process)
                held = next((pid for pid, shards in stopped.items() if "train-00000-of-00001.tfrecord" in shards), None)
                continue_workers(stopped.keys() - {held})
            elif idle and {"val-00000-of-00001.tfrecord", ".val-00000-of-00001.tfrecord.done"} <= names:
                time.sleep(0.1)  # past returning its result: waiting for the next task
                victims = [pid for pid in child_pids(process.pid) if pid != held]
                if len(victims) == 1:
                    os.kill(victims[0], signal.SIGKILL)
                    if then is not None:
                        then()
                    else:
                        time.sleep(1.0)
                    return victims[0], None
            elif not idle and any(n.endswith(".tfrecord.done") for n in names):  # a shard complete, and known so
                stopped = stop_workers(process)
                victim = next((pid for pid, shards in stopped.items() if shards), None)
                if victim is not None:
                    os.kill(victim, signal.SIGKILL)
                    if then is not None:
                        then()
                continue_workers(stopped.keys() - {victim})
                if victim is not None:
                    return victim, stopped[victim][0]
            time.sleep(0.002)
        return None
    finally:
        if held is not None:
            continue_workers([held])


def start_csconv(root: Path, out: Path, *extra: str) -> subprocess.Popen:
    # A session of its own: Ctrl-C is sent to the whole process group, as a terminal does.
    return subprocess.Popen(csconv_command(root, out, "--workers=2", *extra), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(process: subprocess.Popen, timeout: float) -> tuple[str, float]:
    """stderr and seconds until the process ended; a process still running after `timeout` fails the test."""
    started = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"csconv still running {timeout} s later")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return stderr, time.monotonic() - started


def skip_if_finished(process: subprocess.Popen) -> None:
    """No worker could be killed: the run must have ended, and well."""
    stderr, _ = finish(process, 30)
    assert process.returncode == 0, stderr
    pytest.skip("the run finished before a worker could be killed")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("csconv: warning:")]


def assert_cleaned_up(out: Path, clean: dict[str, bytes]) -> None:
    names = os.listdir(out)
    assert not [n for n in names if n.endswith(".partial")], names
    assert MANIFEST_NAME not in names
    assert_no_partial_final_shard(out, clean)


@pytest.fixture(scope="module")
def one_shard_clean(dataset, tmp_path_factory):
    """The clean output with one shard per split (--num_shards=1)."""
    root, _, _ = dataset
    out = tmp_path_factory.mktemp("one-shard") / "clean"
    done = run_csconv(root, out, "--workers=2", "--num_shards=1")
    assert done.returncode == 0, done.stderr
    return snapshot(out)


@linux_only
@pytest.mark.parametrize("idle", [False, True], ids=["writing", "idle"])
def test_killed_worker_ends_the_run_and_resume_finishes(dataset, one_shard_clean, tmp_path, idle):
    root, clean_dir, _ = dataset
    extra = ("--num_shards=1",) if idle else ()
    clean = one_shard_clean if idle else snapshot(clean_dir)
    out = tmp_path / "out"
    process = start_csconv(root, out, *extra)
    killed = kill_a_worker(process, out, idle)
    if killed is None:
        skip_if_finished(process)
    pid, shard = killed
    stderr, seconds = finish(process, 30)
    print(f"worker {pid} killed ({shard or 'idle'}): csconv ended {seconds:.2f} s later")

    assert process.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    # The shard the worker was writing; an idle worker was writing none.
    assert lines[0].startswith(f"csconv: error: {out / shard if shard else out}: "), lines[0]
    assert "worker process" in lines[0] and "SIGKILL" in lines[0], lines[0]
    assert lines[0].endswith("shards were completed and are kept for --resume)"), lines[0]
    assert_cleaned_up(out, clean)

    done = run_csconv(root, out, "--workers=2", "--resume", *extra)
    assert done.returncode == 0, done.stderr
    assert_same_as_clean(out, clean)


@linux_only
@pytest.mark.parametrize(
    "signum, to_group, kill",
    [
        (signal.SIGINT, True, None),
        (signal.SIGINT, True, "writing"),
        (signal.SIGTERM, False, "writing"),
        (signal.SIGINT, True, "idle"),
        (signal.SIGTERM, False, "idle"),
    ],
    ids=["ctrl-c", "ctrl-c-after-a-writing-worker-died", "sigterm-after-a-writing-worker-died",
         "ctrl-c-after-an-idle-worker-died", "sigterm-after-an-idle-worker-died"],
)
def test_signals_end_the_run_within_seconds(dataset, one_shard_clean, tmp_path, signum, to_group, kill):
    root, clean_dir, _ = dataset
    extra = ("--num_shards=1",) if kill == "idle" else ()
    clean = one_shard_clean if kill == "idle" else snapshot(clean_dir)
    out = tmp_path / "out"
    process = start_csconv(root, out, *extra)

    def send_signal():
        if to_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)

    if kill is not None:
        if kill_a_worker(process, out, idle=kill == "idle", then=send_signal) is None:
            skip_if_finished(process)
    else:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out.exists() and any(n.endswith(".tfrecord") for n in os.listdir(out))):
            time.sleep(0.002)
        send_signal()
    stderr, seconds = finish(process, 30)
    print(f"{signal.Signals(signum).name}: csconv ended {seconds:.2f} s later, exit {process.returncode}")

    if process.returncode == 0 and kill is None:
        pytest.skip("the run finished before the signal landed")
    # After a worker died, csconv may have stopped for that reason before the signal came.
    expected = {128 + signum} if kill is None else {128 + signum, 2}
    assert process.returncode in expected, stderr
    assert seconds < 5, f"took {seconds:.1f} s to stop"
    assert "Traceback" not in stderr
    lines = error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("csconv: "), stderr
    if process.returncode == 128 + signum:
        assert f"interrupted by {signal.Signals(signum).name}" in lines[0]
    assert_cleaned_up(out, clean)


# --- signals at the edges of a shard's and of the manifest's completion (in-process, --workers=1)


def test_sigint_right_after_the_manifest_is_in_place_completes_the_run(dataset, tmp_path, monkeypatch, capsys):
    root, clean_dir, _ = dataset
    out = tmp_path / "out"
    real_replace, sent = os.replace, []

    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if str(dst).endswith(MANIFEST_NAME):
            sent.append(dst)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    code = cli.main(["--cityscapes_root", str(root), "--output_dir", str(out), *ARGS, "--workers=1"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert sent, "the manifest was never renamed into place"
    assert code == 0, err
    assert "interrupted" not in err
    assert_same_as_clean(out, snapshot(clean_dir))  # no completion record left behind


def test_sigint_while_a_shard_file_is_closed_is_one_clean_interruption(dataset, tmp_path, monkeypatch, capsys):
    """The signal lands between closing a committed shard's file and marking it closed."""
    import csconv.storage.local

    root, clean_dir, _ = dataset
    out = tmp_path / "out"
    open_shard_fds, closed_shards = set(), []
    real_open, real_close = csconv.storage.local._open_for_writing, os.close

    def open_for_writing(path, direct):
        fd, is_direct = real_open(path, direct)
        if path.endswith(".tfrecord.partial"):
            open_shard_fds.add(fd)
        return fd, is_direct

    def close(fd):
        real_close(fd)
        if fd in open_shard_fds:  # fd numbers are reused: only while the shard's file is open
            open_shard_fds.discard(fd)
            closed_shards.append(fd)
            if len(closed_shards) == 3:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(csconv.storage.local, "_open_for_writing", open_for_writing)
    monkeypatch.setattr(os, "close", close)
    code = cli.main(["--cityscapes_root", str(root), "--output_dir", str(out), *ARGS, "--workers=1"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert len(closed_shards) >= 3, "fewer than three shard files were closed"
    assert code == 130, err
    assert "Traceback" not in err and "Bad file descriptor" not in err
    assert "interrupted by SIGINT" in err
    assert_cleaned_up(out, snapshot(clean_dir))
    done = run_csconv(root, out, "--workers=2", "--resume")
    assert done.returncode == 0, done.stderr
    assert_same_as_clean(out, snapshot(clean_dir))
