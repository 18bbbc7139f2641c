"""CI smoke of the fuzz harnesses (fuzz/): each runs 20 s from its seed corpus, and must
end without a finding. The long runs are FUZZING.md's; this keeps the harnesses working
and catches a regression the seeds' neighbourhood reaches.

The harnesses run two at a time (CI machines have two cores), so the nine take about
100 s of wall time, not 180: each test waits for its own run, starting the next ones.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import subprocess_env

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
SECONDS = 20
# harness -> the module it needs beyond the test extra's common ones (None: nothing more)
HARNESSES = {
    "png": None,
    "label16": None,
    "polygons": None,
    "prepared": None,
    "zip": None,
    "tfrecord": None,
    "parquet": "pyarrow",
    "webdataset": "webdataset",
    "arrayrecord": "array_record",
}
AT_ONCE = 2

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                       reason="atheris not installed (the test extra installs it on Linux x86-64)"),
]


def _runnable(harness: str) -> bool:
    module = HARNESSES[harness]
    return module is None or importlib.util.find_spec(module) is not None


class SmokeRuns:
    """The selected harnesses' runs, started AT_ONCE at a time in the order the tests ask."""

    def __init__(self, harnesses: list[str], corpus: Path, artifacts: Path):
        self.pending = [h for h in harnesses if _runnable(h)]
        self.corpus, self.artifacts = corpus, artifacts
        self.running: dict[str, tuple[subprocess.Popen, Path]] = {}

    def _start(self, harness: str) -> None:
        self.pending.remove(harness)
        folder = self.artifacts / harness
        folder.mkdir()
        log = folder / "log"
        process = subprocess.Popen(
            [sys.executable, str(FUZZ / f"fuzz_{harness}.py"), f"-max_total_time={SECONDS}", "-rss_limit_mb=2048",
             # A minute, not libFuzzer's usual 20 s: the wall clock times an input, and on a
             # shared machine a benchmark may pause every fuzz_* process (SIGSTOP) a while.
             "-timeout=60", f"-artifact_prefix={folder}/", str(self.corpus / harness)],
            cwd=FUZZ, stdout=subprocess.DEVNULL, stderr=log.open("w"), env=subprocess_env(),
        )
        self.running[harness] = (process, folder)

    def result(self, harness: str) -> tuple[int, str, list[Path]]:
        """Exit code, log tail and finding files of one harness's run, once it has ended."""
        if harness not in self.running:
            self._start(harness)
        while self.pending and len(self.running) < AT_ONCE:
            self._start(self.pending[0])
        process, folder = self.running[harness]
        try:
            code = process.wait(timeout=SECONDS + 180)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        del self.running[harness]
        while self.pending and len(self.running) < AT_ONCE:
            self._start(self.pending[0])
        findings = [p for p in folder.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-"))]
        return code, (folder / "log").read_text(errors="replace")[-3000:], findings

    def stop(self) -> None:
        for process, _ in self.running.values():
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, str(FUZZ / "make_seeds.py"), str(corpus)], check=True, env=subprocess_env())
    selected = [
        item.callspec.params["harness"]
        for item in request.session.items
        if item.originalname == "test_harness_runs_without_finding" and hasattr(item, "callspec")
    ]
    smoke = SmokeRuns(selected, corpus, tmp_path_factory.mktemp("runs"))
    yield smoke
    smoke.stop()


@pytest.mark.parametrize("harness", list(HARNESSES))
def test_harness_runs_without_finding(runs, harness):
    if not _runnable(harness):
        pytest.skip(f"{HARNESSES[harness]} not installed")
    code, log, findings = runs.result(harness)
    assert code == 0 and not findings, log
    assert "Done " in log, log
