"""A sink from another package, found through its `csconv` entry point, used by the CLI.

The package in tests/plugin_example is installed with pip into a private folder; the
csconv subprocesses see it through PYTHONPATH, so nothing is registered by hand.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from csconv.sinks.tfrecord import TFRecordSink

PLUGIN_SOURCE = Path(__file__).parent / "plugin_example"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    target = tmp_path_factory.mktemp("plugin-site")
    source = tmp_path_factory.mktemp("plugin-src") / "plugin_example"
    shutil.copytree(PLUGIN_SOURCE, source)  # keep build artefacts out of the checkout
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)],
        check=True,
    )
    return target


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from csconv.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("cityscapes")
    generate_dataset(root, {"train": 4, "val": 2, "test": 2}, width=64, height=32)
    return root


def run_csconv(plugin_path, *args, misbehave=""):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]))
    env["CSCONV_JSONL_MISBEHAVE"] = misbehave
    return subprocess.run(
        [sys.executable, "-m", "csconv", *args], env=env, capture_output=True, text=True, timeout=120
    )


def read_sink(plugin_path, sink, out_dir):
    """Read every shard back in a subprocess that can import the plugin."""
    script = (
        "import pickle, sys, glob\n"
        "from csconv.plugins import get_sink\n"
        f"sink = get_sink({sink!r})\n"
        f"paths = sorted(p for p in glob.glob({str(out_dir)!r} + '/*') if not p.endswith('.json'))\n"
        "sys.stdout.buffer.write(pickle.dumps([s for p in paths for s in sink.read_shard(p)]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(plugin_path))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=True).stdout
    import pickle

    return pickle.loads(out)


def test_installed_sink_is_listed_with_its_distribution(plugin_path):
    result = run_csconv(plugin_path, "sinks")
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("jsonl"))
    assert "csconv-jsonl-sink" in line
    assert any(l.startswith("tfrecord") and "built-in" in l for l in result.stdout.splitlines())


def test_cli_converts_with_the_third_party_sink(plugin_path, synthetic_root, tmp_path):
    ours = run_csconv(plugin_path, "--sink", "jsonl", "--cityscapes_root", str(synthetic_root),
                      "--output_dir", str(tmp_path / "jsonl"), "--workers", "2", "--quiet")
    assert ours.returncode == 0, ours.stderr
    reference = run_csconv(plugin_path, "--cityscapes_root", str(synthetic_root),
                           "--output_dir", str(tmp_path / "tf"), "--quiet")
    assert reference.returncode == 0, reference.stderr
    names = sorted(os.listdir(tmp_path / "jsonl"))
    assert "train-00000-of-00010.jsonl" in names
    jsonl = read_sink(plugin_path, "jsonl", tmp_path / "jsonl")
    tfrecord = [s for p in sorted((tmp_path / "tf").glob("*.tfrecord")) for s in TFRecordSink().read_shard(str(p))]
    assert len(jsonl) == len(tfrecord) > 0
    assert jsonl == tfrecord


@pytest.mark.parametrize(
    "misbehave, message",
    [
        ("import", "plugin 'jsonl' (csconv-jsonl-sink, csconv_jsonl_sink) failed to load: ImportError"),
        ("register", "plugin 'jsonl' failed in register_sinks: RuntimeError"),
        ("duplicate", "sink 'tfrecord' is registered twice: by plugin 'csconv.sinks.tfrecord' and by plugin 'jsonl'"),
    ],
)
def test_broken_plugins_are_named_in_a_one_line_error(plugin_path, misbehave, message):
    result = run_csconv(plugin_path, "sinks", misbehave=misbehave)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
