"""Benchmark the Python API against the formats' own readers and against a conversion.

    python bench/api.py [--frames 300] [--real-frames 140] [--accesses 200] [--repeat 3] [--out BENCHMARKS.md]

On the data sets bench/run.py uses (the same caches: N synthetic 2048x1024 frames, and
copies of the real frames in ../shared/cityscapes-real), two measurements per set:

- random access: the val split converted (panoptic) to TFRecord and to ArrayRecord,
  then one sample at a random index at a time, interleaved, in one fresh process:
  `csconv.read(...)[i]` against TensorFlow's own TFRecord reader reading the record at
  its known offset, and against ArrayRecord's own random-access data source;
- `csconv.samples(root, "train", workers=2)` iterated to the end, against the
  conversion of the same split with the same settings (`csconv --splits train
  --workers 2`), writing to disk and to a tmpfs, each a timed subprocess.

The section it writes goes into BENCHMARKS.md between markers, replacing the one an
earlier run wrote there; bench/run.py keeps that section when it rewrites the file.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import run as bench  # bench/run.py: the data sets, the timed subprocess, the caches

SECTION_START = "<!-- bench/api.py: start -->"
SECTION_END = "<!-- bench/api.py: end -->"
WORKERS = 2
RANDOM_ACCESS_TARGET = 1.5
SAMPLES_TARGET = 0.90

# Iterates the samples of a split and counts them: the API a training loop would call.
SAMPLES_CODE = (
    "import sys, csconv; "
    "print(sum(1 for _ in csconv.samples(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]))))"
)


# -- random access, measured in a fresh process ----------------------------------------


def tfrecord_offsets(paths: list[str]) -> list[tuple[str, int]]:
    """(shard, offset) of every record, found with TensorFlow's own reader: the offsets a
    user of the format keeps."""
    from tensorflow.python.lib.io import _pywrap_record_io

    offsets = []
    for path in paths:
        reader = _pywrap_record_io.RandomRecordReader(path)
        offset, size = 0, os.path.getsize(path)
        while offset < size:
            offsets.append((path, offset))
            _, offset = reader.read(offset)
        reader.close()
    return offsets


def measure_random_access(tfrecord_dir: str, arrayrecord_dir: str, split: str, accesses: int) -> dict:
    import csconv
    from array_record.python.array_record_data_source import ArrayRecordDataSource
    from tensorflow.python.lib.io import _pywrap_record_io

    tf_paths = sorted(glob.glob(os.path.join(tfrecord_dir, f"{split}-*.tfrecord")))
    offsets = tfrecord_offsets(tf_paths)
    tf_readers = {path: _pywrap_record_io.RandomRecordReader(path) for path in tf_paths}
    ar_source = ArrayRecordDataSource(sorted(glob.glob(os.path.join(arrayrecord_dir, f"{split}-*.array_record"))))
    contenders = {
        "tfrecord": (csconv.read(tfrecord_dir, split),
                     lambda i: tf_readers[offsets[i][0]].read(offsets[i][1])[0]),
        "arrayrecord": (csconv.read(arrayrecord_dir, split), lambda i: ar_source[i]),
    }
    results = {}
    for name, (dataset, own_reader) in contenders.items():
        count = len(dataset)
        assert count == (len(offsets) if name == "tfrecord" else len(ar_source)), name
        for i in range(count):  # untimed: every shard opened and indexed, every page cached
            assert len(own_reader(i)) > 0 and dataset[i].filename
        rng = random.Random(0)
        times = {"csconv": [], "own": []}
        for trial in range(accesses):
            i = rng.randrange(count)
            pair = [("csconv", lambda: dataset[i]), ("own", lambda: own_reader(i))]
            for who, call in pair if trial % 2 else pair[::-1]:  # take turns going first
                started = time.perf_counter()
                call()
                times[who].append(time.perf_counter() - started)
        results[name] = {who: statistics.median(values) for who, values in times.items()}
        results[name]["records"] = count
    return results


# -- the section ------------------------------------------------------------------------


def convert_split(root: str, output_dir: str, split: str, sink: str) -> None:
    argv = bench.csconv_argv(root, output_dir, True, WORKERS, ("--splits", split, "--sink", sink))
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def random_access_rows(root: str, scratch: str, accesses: int) -> tuple[list[str], list[bench.Target], str]:
    tfrecord_dir, arrayrecord_dir = os.path.join(scratch, "tfrecord"), os.path.join(scratch, "arrayrecord")
    convert_split(root, tfrecord_dir, "val", "tfrecord")
    convert_split(root, arrayrecord_dir, "val", "arrayrecord")
    argv = [sys.executable, os.path.abspath(__file__), "measure-random-access", tfrecord_dir, arrayrecord_dir,
            "val", str(accesses)]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    results = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(tfrecord_dir)
    shutil.rmtree(arrayrecord_dir)
    own_names = {"tfrecord": "TensorFlow's RandomRecordReader at the record's offset",
                 "arrayrecord": "ArrayRecordDataSource[i]"}
    rows, targets = [], []
    for name, result in results.items():
        ratio = result["csconv"] / result["own"]
        rows.append(f"| {name} | {result['records']} | {result['csconv'] * 1e3:.2f} | {own_names[name]} | "
                    f"{result['own'] * 1e3:.2f} | {ratio:.2f}x |")
        targets.append(bench.Target(
            f"random access to one sample, csconv.read vs {name}'s own reader",
            f"{ratio:.2f}x ({result['csconv'] * 1e3:.2f} vs {result['own'] * 1e3:.2f} ms, median of {accesses})",
            f"<= {RANDOM_ACCESS_TARGET}x", ratio <= RANDOM_ACCESS_TARGET))
    return rows, targets, f"python bench/api.py measure-random-access O/tfrecord O/arrayrecord val {accesses}"


def samples_rows(root: str, sizes: dict[str, int], scratch: str, memory_scratch: str | None,
                 repeat: int, log_prefix: str) -> tuple[list[bench.Measurement], list[bench.Target]]:
    frames = sizes["train"]
    on_disk = os.path.join(scratch, "convert")
    contenders = [
        (f"csconv.samples(R, \"train\", workers={WORKERS})",
         [sys.executable, "-c", SAMPLES_CODE, root, "train", str(WORKERS)],
         f"python -c '{SAMPLES_CODE}' R train {WORKERS}", None),
        (f"csconv --splits train, {WORKERS} workers",
         bench.csconv_argv(root, on_disk, True, WORKERS, ("--splits", "train")),
         f"python -m csconv --cityscapes_root R --output_dir O --splits train --workers {WORKERS} --overwrite --quiet",
         on_disk),
    ]
    if memory_scratch is not None:
        in_memory = os.path.join(memory_scratch, "convert")
        contenders.append((
            f"csconv --splits train, {WORKERS} workers, output on tmpfs",
            bench.csconv_argv(root, in_memory, True, WORKERS, ("--splits", "train")),
            f"python -m csconv --cityscapes_root R --output_dir /dev/shm/O --splits train --workers {WORKERS} "
            "--overwrite --quiet",
            in_memory))
    runs: dict[str, list] = {name: [] for name, *_ in contenders}
    for _ in range(repeat):  # contenders take turns, so a drift of the machine favours none
        for name, argv, _, output in contenders:
            bench.fresh_start(root, output or os.path.join(scratch, "nothing"))
            wall, cpu, peak, stdout = bench.run_timed(argv, log_prefix)
            if output is None:
                assert stdout.split() == [str(frames)], stdout
            runs[name].append((wall, cpu, peak, stdout))
    ms = []
    for name, _, shown, output in contenders:
        wall, cpu, peak, _ = bench.median_run(runs[name])
        ms.append(bench.Measurement(name, shown, frames, frames, wall, cpu, peak))
        if output is not None:
            shutil.rmtree(output, ignore_errors=True)
    targets = []
    for conversion in ms[1:]:
        share = ms[0].wall and conversion.wall / ms[0].wall  # frames/s of samples over the conversion's
        targets.append(bench.Target(
            f"csconv.samples(workers={WORKERS}) frames/s vs {conversion.name}",
            f"{share:.0%} ({frames / ms[0].wall:.1f} vs {frames / conversion.wall:.1f} frames/s)",
            f">= {SAMPLES_TARGET:.0%}", share >= SAMPLES_TARGET))
    return ms, targets


def section_text(args, sets: list[tuple], started: str, load_at_start: str) -> str:
    lines = [
        SECTION_START,
        "## Python API",
        "",
        f"Written by `{shlex.join(['python', 'bench/api.py', *sys.argv[1:]])}` on {started}, "
        "one run; replaced on every run of bench/api.py. Same machine, data sets and method "
        f"(subprocesses, median of the runs, warm page cache) as above; load average when it started: "
        f"{load_at_start}.",
        "",
    ]
    for title, description, access_rows, _, samples_ms, targets in sets:
        lines += [
            f"### {title}",
            "",
            description,
            "",
            "Random access to one sample (val split, panoptic; median of the accesses, every shard already open):",
            "",
            "| format | records | csconv.read(...)[i] ms | the format's own reader | its ms | ratio |",
            "|---|---:|---:|---|---:|---:|",
            *access_rows,
            "",
            "Samples without any output vs a conversion (train split, panoptic):",
            "",
            *bench.results_table(samples_ms),
            "",
            *bench.targets_table(targets),
            "",
        ]
    lines += [
        "Method:",
        "",
        f"- Random access: in a fresh process, "
        f"{args.accesses} random indices (seed 0), csconv and the format's reader taking turns going first. "
        "`csconv.read(O, \"val\")[i]` returns a parsed `csconv.Sample` (its image bytes and the label as an "
        "int32 array); the formats' readers return the serialized tf.train.Example. TensorFlow's reader is "
        "`tensorflow.python.lib.io._pywrap_record_io.RandomRecordReader`, reading at offsets it found itself "
        "by one scan (both sides check the record's CRCs); ArrayRecord's is "
        "`array_record.python.array_record_data_source.ArrayRecordDataSource`, what Grain reads through.",
        f"- Samples: each contender is a timed subprocess (wall time includes start-up and imports), run "
        f"{args.repeat} times in turn; the median wall time is shown. The samples are counted, not stored.",
        "",
        "Commands (R = the data set's root, O = a scratch folder):",
        "",
        f"- random access: `{sets[0][3]}`, after `python -m csconv --cityscapes_root R --output_dir "
        "O/<format> --sink <format> --splits val --workers 2`",
        *[f"- {m.name}: `{m.command}`" for m in sets[0][4]],
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: str, text: str, start: str = SECTION_START, end: str = SECTION_END) -> None:
    """Replace the section (between the markers `start` and `end`) an earlier run left in
    the file, or append it."""
    existing = open(path).read() if os.path.exists(path) else ""
    if start in existing and end in existing:
        before, rest = existing.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        existing = before + text + ("\n" + after if after else "")
    else:
        existing = existing.rstrip("\n") + ("\n\n" if existing else "") + text
    with open(path + ".partial", "w") as f:
        f.write(existing)
    os.replace(path + ".partial", path)


def main(argv: list[str]) -> int:
    if argv[:1] == ["measure-random-access"]:
        tfrecord_dir, arrayrecord_dir, split, accesses = argv[1:]
        print(json.dumps(measure_random_access(tfrecord_dir, arrayrecord_dir, split, int(accesses))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="synthetic frames, as bench/run.py --frames (default 300)")
    parser.add_argument("--real-frames", type=int, default=140, help="real-frame copies (default 140; 0: skip)")
    parser.add_argument("--real-source", default=bench.REAL_SOURCE)
    parser.add_argument("--accesses", type=int, default=200, help="random accesses per format (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each samples/conversion contender (default 3)")
    parser.add_argument("--out", default=os.path.join(bench.REPO, "BENCHMARKS.md"))
    parser.add_argument("--cache", help="synthetic data folder, as bench/run.py's --cache "
                        "(default bench/.cache/<w>x<h>-<frames>-seed0; the real-frame copies go beside it)")
    parser.add_argument("--settle", type=float, default=bench.SETTLE_SECONDS,
                        help="seconds to let the disk settle before each timed run, as bench/run.py's (default 2)")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1024)
    args = parser.parse_args(argv)
    bench.SETTLE_SECONDS = args.settle
    started = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}"
    sizes = bench.split_sizes(args.frames)
    cache = os.path.abspath(args.cache or os.path.join(
        bench.REPO, "bench", ".cache", f"{args.width}x{args.height}-{args.frames}-seed{bench.SEED}"))
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    bench.ensure_cache(cache, sizes, args.width, args.height)
    data_sets = [("Synthetic frames", cache, sizes,
                  f"{sum(sizes.values())} synthetic {args.width}x{args.height} frames (bench/run.py's): "
                  f"val {sizes['val']}, train {sizes['train']}.")]
    if args.real_frames and os.path.isdir(args.real_source):
        real_sizes = bench.real_split_sizes(args.real_frames)
        real_cache = os.path.join(os.path.dirname(cache), f"real-{args.real_frames}")
        bench.ensure_real_cache(real_cache, args.real_source, real_sizes)
        data_sets.append(("Real frames", real_cache, real_sizes,
                          f"{sum(real_sizes.values())} copies of the real 2048x1024 frames (bench/run.py's): "
                          f"val {real_sizes['val']}, train {real_sizes['train']}."))
    scratch = tempfile.mkdtemp(prefix="bench-api-", dir=os.path.dirname(cache))
    memory_scratch = bench.memory_folder()
    sets = []
    try:
        for title, root, set_sizes, description in data_sets:
            print(f"bench: {title.lower()} ({root})")
            access_rows, access_targets, access_command = random_access_rows(root, scratch, args.accesses)
            samples_ms, samples_targets = samples_rows(root, set_sizes, scratch, memory_scratch, args.repeat,
                                                       os.path.join(scratch, "log"))
            sets.append((title, description, access_rows, access_command, samples_ms,
                         access_targets + samples_targets))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if memory_scratch is not None:
            shutil.rmtree(memory_scratch, ignore_errors=True)
    text = section_text(args, sets, started, load_at_start)
    write_section(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
