"""Progress: plain lines off a terminal, a tqdm bar on one, and the closing summary."""

import io

from csconv.progress import Progress


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
