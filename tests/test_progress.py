"""Progress: plain lines off a terminal, a tqdm bar on one, and the closing summary."""

import io
import json
import os
import select
import struct
import subprocess
import sys
import time

import pytest

from csconv.pipeline.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    progress = Progress(total=4, stream=stream, every_seconds=0)
    for _ in range(4):
        progress.advance()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[-1].startswith("csconv: 4/4 frames (100%),") and "frames/s, ETA 0 s" in lines[-1]


def test_shards_waiting_for_their_upload_are_shown_after_the_last_frame():
    stream = io.StringIO()
    progress = Progress(total=2, stream=stream, every_seconds=0)
    progress.advance(2)
    progress.uploading(3)
    progress.tick()
    progress.uploading(1)
    progress.tick()
    progress.uploading(0)
    progress.tick()
    lines = stream.getvalue().splitlines()
    assert lines[1].startswith("csconv: 2/2 frames (100%)") and lines[1].endswith("; 3 shards uploading")
    assert lines[2].endswith("; 1 shard uploading")
    assert "uploading" not in lines[3]

    terminal = FakeTerminal()
    bar = Progress(total=2, stream=terminal)
    bar.advance(2)
    bar.uploading(2)
    assert "2 shards uploading" in terminal.getvalue()
    bar.close()


def test_quiet_prints_nothing():
    stream = io.StringIO()
    progress = Progress(total=3, enabled=False, stream=stream, every_seconds=0)
    progress.advance(3)
    progress.close()
    assert stream.getvalue() == ""


def test_bar_on_a_terminal():
    stream = FakeTerminal()
    progress = Progress(total=10, stream=stream)
    progress.advance(10)
    progress.close()
    text = stream.getvalue()
    assert "10/10" in text and "frame/s" in text


FORK_WATCH = r"""
import json, os, sys, threading
from csconv import cli

forks = []
os.register_at_fork(before=lambda: forks.append(sorted(t.name for t in threading.enumerate())))
code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "threads_at_fork": forks}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no fork, and no pty")
def test_no_thread_runs_when_the_workers_fork(tmp_path):
    """With the bar on a real terminal, only the main thread may exist at each fork: a
    thread holding a lock at that instant leaves the lock held for ever in the child
    (Python 3.12 warns "use of fork() may lead to deadlocks")."""
    import fcntl
    import pty
    import termios

    from csconv.synthetic import generate_dataset

    root = tmp_path / "cityscapes"
    generate_dataset(root, {"train": 8, "val": 4}, width=64, height=32, seed=0)
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # else 0 columns: no bar
    process = subprocess.Popen(
        [sys.executable, "-c", FORK_WATCH, "--cityscapes_root", str(root), "--output_dir", str(tmp_path / "out"),
         "--splits=train,val", "--num_shards=4", "--workers=2"],
        stdout=subprocess.PIPE, stderr=secondary, text=True,
    )
    os.close(secondary)
    terminal, deadline = b"", time.monotonic() + 120
    while True:  # read the terminal as it is written, or the bar would block on a full pty
        if not select.select([primary], [], [], max(0.0, deadline - time.monotonic()))[0]:
            process.kill()
            pytest.fail("the conversion did not end within 120 s")
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        terminal += chunk
    os.close(primary)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 0, terminal.decode(errors="replace")
    assert b"frame/s" in terminal  # the tqdm bar was drawn
    report = json.loads(stdout.splitlines()[-1])
    assert report["code"] == 0
    assert len(report["threads_at_fork"]) >= 2  # both workers
    assert all(names == ["MainThread"] for names in report["threads_at_fork"]), report["threads_at_fork"]
