"""README's Python examples run as written: each code block after an `<!-- example: NAME -->`
line is run as a script, unchanged, in a folder holding what README says it holds (a
Cityscapes root `cityscapes/` and its panoptic conversions `tfrecords/` and
`arrayrecord/`). Only what the test appends after the block checks its results."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import csconv
from conftest import subprocess_env

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLE = re.compile(r"^<!-- example: (?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)^```", re.S | re.M)
SPLITS = {"train": 6, "val": 3, "test": 1}
HEIGHT, WIDTH = 48, 96
pytestmark = pytest.mark.filterwarnings("ignore::csconv.SplitSizeWarning")


def example(name: str) -> str:
    found = {match["name"]: match["code"] for match in EXAMPLE.finditer(README.read_text())}
    assert name in found, f"README has no example {name!r} (it has {', '.join(found)})"
    return found[name]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from csconv.synthetic import generate_dataset

    folder = tmp_path_factory.mktemp("readme")
    generate_dataset(folder / "cityscapes", SPLITS, width=WIDTH, height=HEIGHT, seed=11)
    csconv.convert(folder / "cityscapes", folder / "tfrecords", workers=2)
    if _has("array_record"):
        csconv.convert(folder / "cityscapes", folder / "arrayrecord", sink="arrayrecord", workers=2)
    return folder


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run_example(name: str, folder: Path, check: str = "") -> str:
    """The example as a script in `folder` (a fresh process: the loaders fork), then `check`."""
    script = folder / f"{name}.py"
    script.write_text(example(name) + textwrap.dedent(check))
    done = subprocess.run([sys.executable, script.name], cwd=folder, capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def batch_sizes(stdout: str, pattern: str) -> list[int]:
    """The first dimension of every printed batch, each line checked against `pattern`."""
    sizes = []
    for line in stdout.splitlines():
        match = re.fullmatch(pattern, line.strip())
        assert match, line
        sizes.append(int(match["batch"]))
    return sizes


def test_samples_class_counts_equal_csconv_stats(folder):
    from csconv.inspection.stats import compute_stats

    stdout = run_example("samples-class-counts", folder, """
        import json
        with open("counts.json", "w") as f:
            json.dump({"pixels": pixels.tolist(), "instances": instances.tolist()}, f)
    """)
    counts = json.loads((folder / "counts.json").read_text())
    (stats,) = compute_stats(str(folder / "tfrecords"), ["val"])
    np.testing.assert_array_equal(counts["pixels"], stats.pixels)
    np.testing.assert_array_equal(counts["instances"], stats.instances)
    assert sum(counts["pixels"]) == SPLITS["val"] * HEIGHT * WIDTH and sum(counts["instances"]) > 0
    shares = [round(100 * stats.pixels[t] / stats.total, 3) for t in range(256) if stats.pixels[t]]
    assert [float(x) for x in re.findall(r"[\d.]+", stdout)] == shares  # the printed line


def test_pytorch_dataloader_with_two_workers_over_tfrecord_output(folder):
    pytest.importorskip("torch", reason="torch comes with the test extra on Linux x86-64, Python 3.11 only")
    stdout = run_example("pytorch-dataloader", folder, """
        seen = [name for batch in torch.utils.data.DataLoader(
            dataset, batch_size=4, num_workers=2, collate_fn=lambda s: [x.filename for x in s]) for name in batch]
        assert sorted(seen) == sorted(sample.filename for sample in dataset), seen
    """)
    shape = rf"torch.Size\(\[(?P<batch>\d), {HEIGHT}, {WIDTH}, 3\]\) torch.Size\(\[(?P=batch), {HEIGHT}, {WIDTH}\]\)"
    assert sorted(batch_sizes(stdout, shape)) == [2, 4]  # 6 frames: every one, in batches of 4


def test_grain_over_csconv_read(folder):
    pytest.importorskip("grain")
    pytest.importorskip("array_record", reason="pip install 'csconv[arrayrecord]'")
    stdout = run_example("grain-read", folder)
    shape = rf"\((?P<batch>\d), {HEIGHT}, {WIDTH}, 3\) \((?P=batch), {HEIGHT}, {WIDTH}\)"
    assert batch_sizes(stdout, shape) == [SPLITS["train"]]


def test_grain_map_dataset_over_arrayrecord_shards(folder):
    pytest.importorskip("grain")
    pytest.importorskip("tensorflow")
    pytest.importorskip("array_record", reason="pip install 'csconv[arrayrecord]'")
    stdout = run_example("grain-arrayrecord", folder, """
        import csconv
        stored = sorted((s.image_array().tobytes(), s.label_array().tobytes()) for s in csconv.read("arrayrecord", "train"))
        decoded = sorted((image.tobytes(), label.tobytes()) for image, label in map(decode, source))
        assert decoded == stored, "decode() differs from what csconv stored"
    """)
    shape = rf"\((?P<batch>\d), {HEIGHT}, {WIDTH}, 3\) \((?P=batch), {HEIGHT}, {WIDTH}\)"
    assert batch_sizes(stdout, shape) == [SPLITS["train"]]
