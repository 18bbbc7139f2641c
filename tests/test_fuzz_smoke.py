"""CI smoke of the fuzz harnesses (fuzz/): each runs 15 s from its seed corpus, and must
end without a finding. The long runs are FUZZING.md's; this keeps the harnesses working
and catches a regression the seeds' neighbourhood reaches."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import subprocess_env

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
HARNESSES = ["png", "label16", "polygons", "prepared", "zip"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed (pip install csconv[fuzz])"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    target = tmp_path_factory.mktemp("corpus")
    subprocess.run([sys.executable, str(FUZZ / "make_seeds.py"), str(target)], check=True, env=subprocess_env())
    return target


@pytest.mark.parametrize("harness", HARNESSES)
def test_harness_runs_without_finding(corpus, tmp_path, harness):
    done = subprocess.run(
        [sys.executable, str(FUZZ / f"fuzz_{harness}.py"), "-max_total_time=15", "-rss_limit_mb=2048", "-timeout=20",
         f"-artifact_prefix={tmp_path}/", str(corpus / harness)],
        cwd=FUZZ, capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )
    findings = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("timeout-*")) + list(tmp_path.glob("oom-*"))
    assert done.returncode == 0 and not findings, done.stderr[-3000:]
    assert "Done " in done.stderr, done.stderr[-3000:]
