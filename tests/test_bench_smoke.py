"""Smoke test for bench/run.py: it runs end to end on a tiny set and writes its report.

No speed figure is asserted: CI machines are noisy and 3 tiny frames measure start-up.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_SOURCE = os.path.join(os.path.dirname(REPO), "shared", "cityscapes-real")
RESULTS_HEADER = "| contender | frames | wall s | wall ms/frame | wall ms/labelled frame | CPU ms/frame | peak MiB |"
CONTENDERS = (
    "floor (bench/floor.py)",
    "csconv panoptic, 1 worker(s)",
    "csconv panoptic, 2 worker(s)",
    "disk alone: the panoptic output bytes, nothing else (bench/disk.py)",
    "csconv panoptic, 2 worker(s), output on tmpfs",
    "csconv semantic, 1 worker(s)",
    "csconv semantic, 2 worker(s)",
    "csconv semantic --png_compress_level 1, 2 worker(s)",
    "csCreatePanopticImgs",
    "csCreateTrainIdLabelImgs",
    "csCreatePanopticImgs (original ids)",
    "cityscapesscripts prework chain: the three above, times summed",
    "csconv prework, 1 worker(s)",
    "csconv prework, 2 worker(s)",
    "prework floor (bench/prework_floor.py)",
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the benchmark reads /proc")
def test_bench_runs_and_writes_the_table(tmp_path):
    pytest.importorskip("cityscapesscripts")
    report = tmp_path / "B.md"
    argv = [
        sys.executable, os.path.join(REPO, "bench", "run.py"),
        "--frames", "3", "--width", "256", "--height", "128", "--repeat", "1", "--settle", "0",
        "--out", str(report), "--cache", str(tmp_path / "cache"), "--real-frames", "2",
    ]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]

    text = report.read_text()
    assert RESULTS_HEADER in text
    table_rows = [line for line in text.splitlines() if line.startswith("| ")]
    for name in CONTENDERS:
        assert any(row.startswith(f"| {name} |") for row in table_rows), name
    assert "| target | measured | goal | result |" in text
    assert "| csconv prework files vs the cityscapesscripts chain's | identical |" in text
    caches = ["cache"]
    if os.path.isdir(REAL_SOURCE):  # 2 frames copied from the real ones: the same contenders again
        assert "## Real frames" in text
        assert len(table_rows) >= 2 * len(CONTENDERS)
        caches.append("real-2")
    # Scratch output is cleaned up; only the caches and the report remain.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B.md", *caches]



@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the benchmark reads /proc")
def test_api_bench_writes_its_section_and_bench_run_keeps_it(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("array_record")
    report = tmp_path / "B.md"
    report.write_text("# csconv benchmark\n\nwhat bench/run.py wrote\n")
    argv = [
        sys.executable, os.path.join(REPO, "bench", "api.py"),
        "--frames", "3", "--width", "256", "--height", "128", "--repeat", "1", "--settle", "0", "--accesses", "4",
        "--out", str(report), "--cache", str(tmp_path / "cache"), "--real-frames", "0",
    ]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    assert text.startswith("# csconv benchmark\n\nwhat bench/run.py wrote\n")
    for row in ("| tfrecord | 1 |", "| arrayrecord | 1 |", '| csconv.samples(R, "train", workers=2) | 1 |',
                "| csconv --splits train, 2 workers | 1 |"):
        assert row in text, row

    sys.path.insert(0, os.path.join(REPO, "bench"))
    try:
        import api as bench_api
        import run as bench_run
    finally:
        sys.path.pop(0)
    section = text[text.index(bench_api.SECTION_START):]
    assert bench_run.kept_sections(str(report)) == section  # what bench/run.py writes again after its report
    report.write_text(text + "## A section after it\n")
    bench_api.write_section(str(report), f"{bench_api.SECTION_START}\nnew\n{bench_api.SECTION_END}\n")
    assert report.read_text() == (f"# csconv benchmark\n\nwhat bench/run.py wrote\n\n{bench_api.SECTION_START}\nnew\n"
                                  f"{bench_api.SECTION_END}\n\n## A section after it\n")
