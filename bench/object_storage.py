"""Conversion into an S3 bucket against its floors, measured in one run.

For 2048x1024 frames (synthetic, and copies of the real ones), panoptic task, 2 workers:
- local: csconv into a folder on the local disk;
- upload alone: the same output bytes uploaded by s3fs (`put` of that folder), the floor
  for the upload: as a process of its own (Python, s3fs's import and client included,
  as in csconv's own runs), and inside this already warm process;
- csconv to S3: the conversion straight into s3:// (uploads overlap conversion).
The target (issue 12): csconv to S3 at most 1.25x the larger of the other two. The S3
server is moto's, on 127.0.0.1, started here (tests/object_stores.py) and sharing the
machine's cores with the run, as it does with the upload floor.

    python bench/object_storage.py [--frames 64] [--real-frames 64] [--repeat 3] [--out BENCHMARKS.md]

The section it writes goes into BENCHMARKS.md between markers, replacing the one an
earlier run wrote; bench/run.py keeps it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]

import run as bench  # noqa: E402  (bench/run.py: the cached data sets and the timed runner)
from api import write_section  # noqa: E402
from object_stores import start_s3  # noqa: E402

TARGET = 1.25
# The upload floor as a user runs it, a process of its own, as csconv's runs are: Python
# starting, s3fs imported, its client made, then the same `put`.
UPLOAD_SCRIPT = "import sys, fsspec; fsspec.filesystem('s3').put(sys.argv[1], sys.argv[2], recursive=True)"
SECTION_START = "<!-- bench/object_storage.py: start -->"
SECTION_END = "<!-- bench/object_storage.py: end -->"


def timed_csconv(root: str, output: str, env: dict, log: str) -> tuple[float, int]:
    argv = bench.csconv_argv(root, output, panoptic=True, workers=2)
    wall, _, peak, _ = bench.run_timed(argv, log, env=env)
    return wall, peak


def measure(label: str, root: str, scratch: str, server, repeat: int) -> dict:
    import fsspec

    env = {**os.environ, **server.env}
    os.environ.update(server.env)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    local_runs, upload_runs, warm_upload_runs, s3_runs, peaks = [], [], [], [], []
    local_out = os.path.join(scratch, "local-out")
    for attempt in range(repeat):
        shutil.rmtree(local_out, ignore_errors=True)
        bench.warm_page_cache(root)
        wall, _ = timed_csconv(root, local_out, env, os.path.join(scratch, f"local-{attempt}"))
        local_runs.append(wall)

        bucket = f"bench-{label}-{attempt}-{os.getpid()}"
        fs.mkdir(bucket)
        started = time.perf_counter()
        fs.put(local_out + "/", f"{bucket}/upload/", recursive=True)
        warm_upload_runs.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", UPLOAD_SCRIPT, local_out + "/", f"{bucket}/process/"], env=env, check=True)
        upload_runs.append(time.perf_counter() - started)

        bench.warm_page_cache(root)
        wall, peak = timed_csconv(root, f"s3://{bucket}/csconv", env, os.path.join(scratch, f"s3-{attempt}"))
        s3_runs.append(wall)
        peaks.append(peak)
        fs.invalidate_cache()
        uploaded = {p.rsplit("/", 1)[1]: fs.info(p)["size"] for p in fs.find(f"{bucket}/csconv")}
        local = {name: os.path.getsize(os.path.join(local_out, name)) for name in os.listdir(local_out)}
        if uploaded != local:
            raise SystemExit(f"bench: the bucket's output differs from the local run's ({label})")
        fs.rm(bucket, recursive=True)
    output_bytes = bench.folder_bytes(local_out)
    local, upload, warm_upload, s3 = (
        statistics.median(runs) for runs in (local_runs, upload_runs, warm_upload_runs, s3_runs)
    )
    return {
        "label": label, "frames": len([1 for _ in _frames(root)]), "bytes": output_bytes,
        "local": local, "upload": upload, "warm_upload": warm_upload, "s3": s3, "peak": max(peaks),
        "ratio": s3 / max(local, upload), "warm_ratio": s3 / max(local, warm_upload),
    }


def _frames(root: str):
    for dirpath, _, names in os.walk(os.path.join(root, "leftImg8bit")):
        yield from (name for name in names if name.endswith("_leftImg8bit.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=64, help="synthetic 2048x1024 frames")
    parser.add_argument("--real-frames", type=int, default=64, help="copies of the real frames")
    parser.add_argument("--real-source", default=bench.REAL_SOURCE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", default=os.path.join(HERE, ".cache"))
    parser.add_argument("--scratch", default=None, help="folder for the local output (default: a temporary one)")
    parser.add_argument("--out", default=os.path.join(bench.REPO, "BENCHMARKS.md"))
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())

    synthetic_root = os.path.join(args.cache, f"2048x1024-{args.frames}-seed{bench.SEED}")
    bench.ensure_cache(synthetic_root, bench.split_sizes(args.frames), 2048, 1024)
    real_root = os.path.join(args.cache, f"real-{args.real_frames}")
    bench.ensure_real_cache(real_root, args.real_source, bench.real_split_sizes(args.real_frames))

    server = start_s3()
    results = []
    try:
        with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
            for label, root in (("synthetic", synthetic_root), ("real", real_root)):
                results.append(measure(label, root, scratch, server, args.repeat))
    finally:
        server.stop()

    lines = [
        SECTION_START,
        "## Object storage",
        "",
        f"Written by `{shlex.join(['python', 'bench/object_storage.py', *sys.argv[1:]])}` on {started}, one run; "
        f"load average when it started: {load}. 2048x1024 frames, panoptic, 2 workers, median of {args.repeat}; "
        "the S3 server is moto's, on 127.0.0.1, sharing the 2 cores with the run (as with the upload floor). "
        "`local`: csconv into a folder on the local disk; `upload alone`: s3fs uploading that folder's bytes "
        "(`put`), the floor for the upload, run as a process of its own as a user runs it (Python starting, "
        "s3fs imported, its client made: csconv's runs pay the same) and, in brackets, inside the benchmark's "
        "already warm process; `csconv to s3://`: the conversion straight into the bucket, byte-identical to "
        "the local run (checked). The ratio is csconv to s3:// over the larger of local and upload alone; in "
        "brackets, over the larger of local and the warm upload. On a 2-core machine the server's CPU and the "
        "conversion's share the cores; against a store elsewhere the server's CPU is not on the machine.",
        "",
        "| frames | output | local conversion | s3fs upload alone (warm) | csconv to s3:// | "
        "ratio to the larger (warm) | peak RSS | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        verdict = "PASS" if r["ratio"] <= TARGET else "FAIL"
        lines.append(
            f"| {r['frames']} {r['label']} | {r['bytes'] / bench.MIB:,.0f} MiB | {r['local']:.1f} s | "
            f"{r['upload']:.1f} s ({r['warm_upload']:.1f} s) | {r['s3']:.1f} s | "
            f"{r['ratio']:.2f}x ({r['warm_ratio']:.2f}x) | {r['peak'] / bench.MIB:,.0f} MiB | "
            f"<= {TARGET}x {verdict} |"
        )
    lines.append(SECTION_END)
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.out, text, SECTION_START, SECTION_END)


if __name__ == "__main__":
    main()
