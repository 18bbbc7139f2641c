"""Benchmark csconv against the cityscapesscripts prework and against a minimal floor.

    python bench/run.py --frames N [--real-frames M] [--workers-list 1,2] [--out BENCHMARKS.md]
                        [--cache DIR] [--width 2048 --height 1024]

Generates N synthetic full-size Cityscapes frames once (cached), and M frames made
from the real ones in ../shared/cityscapes-real (copies under new names), then times
each contender on each set as a subprocess: wall time, CPU time of the whole process
tree and peak memory (sum of RSS over the process tree). Prints a table and the
project's targets with PASS/FAIL per set, and writes the same into a markdown file
(replaced every run). A figure that holds only on synthetic frames is not one users see.

The targets are reported, not enforced: the exit status is 0 whenever every
contender ran, so CI can run this as a smoke test on a tiny, noisy set.
Linux only: peak memory is read from /proc.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOOR_SCRIPT = os.path.join(REPO, "bench", "floor.py")
DISK_SCRIPT = os.path.join(REPO, "bench", "disk.py")
SEED = 0
SAMPLE_SECONDS = 0.02
SETTLE_SECONDS = 2.0  # --settle
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20
DISK_ALONE = "disk alone: the panoptic output bytes, nothing else (bench/disk.py)"


# -- the data set ---------------------------------------------------------------------


def split_sizes(frames: int) -> dict[str, int]:
    """Cityscapes' own proportions (2975/500/1525: ~60/10/30 %), at least one per split."""
    if frames < 3:
        raise SystemExit("--frames must be at least 3 (one per split)")
    val = max(1, round(frames * 0.10))
    test = max(1, round(frames * 0.30))
    return {"train": frames - val - test, "val": val, "test": test}


def cached_tree(cache: str, recipe: dict, build) -> None:
    """Build a data tree with `build(folder)` unless a complete one of the same recipe is there.

    A tree is complete when its marker file exists: the marker is written last, and the
    tree is built under a temporary name, so a killed build is never reused.
    """
    marker = os.path.join(cache, "bench-cache.json")
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == recipe:
                print(f"bench: reusing {cache}")
                return
    building = cache + ".partial"
    shutil.rmtree(building, ignore_errors=True)
    build(building)
    with open(os.path.join(building, "bench-cache.json"), "w") as f:
        json.dump(recipe, f)
    shutil.rmtree(cache, ignore_errors=True)
    os.rename(building, cache)


def ensure_cache(cache: str, sizes: dict[str, int], width: int, height: int) -> None:
    """The synthetic tree, generated once per recipe."""
    from csconv.synthetic import generate_dataset

    def build(folder):
        print(f"bench: generating {sum(sizes.values())} frames {width}x{height} into {cache}")
        generate_dataset(folder, sizes, width=width, height=height, seed=SEED)

    # The generator's own code is part of the recipe: what it writes changes with it.
    generator = hashlib.sha256()
    for name in sorted(os.listdir(os.path.join(REPO, "csconv", "synthetic"))):
        if name.endswith(".py"):
            with open(os.path.join(REPO, "csconv", "synthetic", name), "rb") as f:
                generator.update(f.read())
    recipe = {"splits": sizes, "width": width, "height": height, "seed": SEED, "generator": generator.hexdigest()}
    cached_tree(cache, recipe, build)


REAL_SOURCE = os.path.join(os.path.dirname(REPO), "shared", "cityscapes-real")
REAL_CITY = {"train": "aachen", "val": "frankfurt"}
GTFINE_SUFFIXES = ("instanceIds.png", "labelIds.png", "color.png", "polygons.json")


def real_split_sizes(frames: int) -> dict[str, int]:
    """Train and val only: the real frames carry full labels, and copying them into the
    test split would make the prework label test frames that the real download leaves
    nearly empty, which would flatter csconv's ratios."""
    if frames < 2:
        raise SystemExit("--real-frames must be at least 2 (one per labelled split)")
    val = max(1, round(frames / 7))  # Cityscapes' 2975:500
    return {"train": frames - val, "val": val}


def ensure_real_cache(cache: str, source: str, sizes: dict[str, int]) -> None:
    """A Cityscapes tree of copies of the real frames in `source`, under new names.

    Frame i of a split is real frame i mod 4 with every file the download has for it,
    named <city>_<i:06d>_000019 so names are unique and sort in the order written.
    """
    images = sorted(name for name in os.listdir(os.path.join(source, "leftImg8bit", "train", "aachen")))
    stems = [name[: -len("_leftImg8bit.png")] for name in images]

    def build(folder):
        print(f"bench: copying {sum(sizes.values())} frames from the {len(stems)} real ones into {cache}")
        for split, count in sizes.items():
            city = REAL_CITY[split]
            for i in range(count):
                real = stems[i % len(stems)]
                name = f"{city}_{i:06d}_000019"
                copies = [(os.path.join(source, "leftImg8bit", "train", "aachen", f"{real}_leftImg8bit.png"),
                           os.path.join(folder, "leftImg8bit", split, city, f"{name}_leftImg8bit.png"))]
                copies += [(os.path.join(source, "gtFine", "train", "aachen", f"{real}_gtFine_{suffix}"),
                            os.path.join(folder, "gtFine", split, city, f"{name}_gtFine_{suffix}"))
                           for suffix in GTFINE_SUFFIXES]
                for source_path, target in copies:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copyfile(source_path, target)

    cached_tree(cache, {"splits": sizes, "source": source, "frames": stems}, build)


def warm_page_cache(root: str) -> None:
    """Read every file under root once, untimed.

    Dropping the page cache needs root and a quiet disk; instead every contender
    starts with its inputs already cached, so all of them are measured the same way.
    """
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                while f.read(8 * MIB):
                    pass


# -- measuring one subprocess -----------------------------------------------------------


class TreeMemorySampler(threading.Thread):
    """Every SAMPLE_SECONDS, sums the RSS of a process and all its descendants; keeps the max.

    Descendants are found through the parent pid in /proc/<pid>/stat (this kernel may
    lack /proc/<pid>/task/*/children). Each pid's parent is read once and remembered,
    so a sample costs one listdir of /proc plus one statm read per process of the tree.
    """

    def __init__(self, root_pid: int):
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.peak_bytes = 0
        self._parent_of: dict[int, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            self.sample()
            if self._stop_event.wait(SAMPLE_SECONDS):
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def sample(self) -> None:
        total = sum(rss_bytes(pid) for pid in self.tree_pids())
        self.peak_bytes = max(self.peak_bytes, total)

    def tree_pids(self) -> list[int]:
        alive = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        for pid in list(self._parent_of):
            if pid not in alive:  # forget exited processes, in case their pid is reused
                del self._parent_of[pid]
        for pid in alive - self._parent_of.keys():
            parent = parent_pid(pid)
            if parent is not None:
                self._parent_of[pid] = parent
        children: dict[int, list[int]] = {}
        for pid, parent in self._parent_of.items():
            children.setdefault(parent, []).append(pid)
        tree, todo = [], [self.root_pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, ()))
        return tree


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # exited meanwhile
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError):
        return 0


@dataclass
class Measurement:
    name: str
    command: str  # for the report, with the temporary paths abbreviated
    frames: int  # frames this contender processes
    labelled: int  # train + val frames of the data set
    wall: float  # seconds
    cpu: float  # seconds, user + sys of the whole process tree
    peak_bytes: int
    output_bytes: int = 0  # what the run wrote, when known

    @property
    def wall_ms_per_frame(self) -> float:
        return 1000 * self.wall / self.frames

    @property
    def wall_ms_per_labelled(self) -> float:
        return 1000 * self.wall / self.labelled

    @property
    def cpu_ms_per_frame(self) -> float:
        return 1000 * self.cpu / self.frames


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fresh_start(root: str, output: str) -> None:
    """Untimed, before each run: remove the previous run's output and let the disk settle.

    Deleting gigabytes on a filesystem mounted with `discard` makes the disk trim them
    for seconds afterwards; a run started meanwhile would be timed against that.
    """
    if os.path.isdir(output):
        shutil.rmtree(output)
    elif os.path.exists(output):
        os.unlink(output)
    os.sync()
    time.sleep(SETTLE_SECONDS)
    warm_page_cache(root)


def run_repeated(argv: list[str], log_prefix: str, repeat: int, before=None) -> tuple[float, float, int, str]:
    runs = []
    for _ in range(repeat):
        if before is not None:
            before()
        runs.append(run_timed(argv, log_prefix))
    return median_run(runs)


def median_run(runs: list[tuple[float, float, int, str]]) -> tuple[float, float, int, str]:
    """The run with the median wall time; peak memory is the worst of them.

    A virtual machine's disk and CPU vary from run to run by tens of percent; the
    median of a few runs is what a user can expect, the min would flatter.
    """
    runs = sorted(runs, key=lambda run: run[0])
    wall, cpu, _, stdout = runs[len(runs) // 2]
    return wall, cpu, max(run[2] for run in runs), stdout


def run_timed(argv: list[str], log_prefix: str, env: dict | None = None) -> tuple[float, float, int, str]:
    """Run argv to completion: (wall s, CPU s, peak tree RSS bytes, stdout text).

    CPU time is the RUSAGE_CHILDREN delta: it covers every descendant that was waited
    for, which includes multiprocessing workers (the pool reaps them). Output goes to
    files, not pipes, so a chatty process can never block on a full pipe.
    """
    with open(log_prefix + ".out", "wb+") as out, open(log_prefix + ".err", "wb+") as err:
        cpu_before = children_cpu_seconds()
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        sampler = TreeMemorySampler(process.pid)
        sampler.start()
        returncode = process.wait()
        wall = time.perf_counter() - started
        sampler.stop()
        cpu = children_cpu_seconds() - cpu_before
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if returncode != 0:
        raise SystemExit(f"bench: {shlex.join(argv)} failed with status {returncode}:\n{stderr[-3000:]}")
    return wall, cpu, sampler.peak_bytes, stdout


# -- the contenders ---------------------------------------------------------------------


# Semantic labels are the reference's PNG bytes by default; this flag trades them for speed.
FAST_PNG = ("--png_compress_level", "1")
# Not a flag: the output folder is on a tmpfs (/dev/shm), so the disk's pace is left out.
IN_MEMORY = ("tmpfs",)
IN_MEMORY_LABEL = "output on tmpfs"


def csconv_argv(root: str, output_dir: str, panoptic: bool, workers: int, extra=()) -> list[str]:
    argv = [sys.executable, "-m", "csconv", "--cityscapes_root", root, "--output_dir", output_dir]
    if not panoptic:
        argv.append("--create_panoptic_data=false")
    return argv + [*extra, "--workers", str(workers), "--overwrite", "--quiet"]


def folder_bytes(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))


def shard_hashes(directory: str) -> dict[str, str]:
    hashes = {}
    for name in sorted(os.listdir(directory)):
        digest = hashlib.sha256()
        with open(os.path.join(directory, name), "rb") as f:
            while chunk := f.read(8 * MIB):
                digest.update(chunk)
        hashes[name] = digest.hexdigest()
    return hashes


def bench_csconv(root, scratch, sizes, panoptic: bool, workers_list: list[int], repeat: int,
                 memory_scratch: str | None = None) -> tuple[list[Measurement], bool]:
    """`repeat` runs per worker count, interleaved (1, 2, 1, 2, ...) so that a drift of
    the machine's speed during the benchmark does not favour one worker count; returns
    the median run of each and whether all outputs agree.

    For the panoptic task "disk alone" takes its turn too: the panoptic output's
    bytes, written by bench/disk.py in as many streams as the largest worker count.
    For the semantic task, a run with --png_compress_level 1 at the largest worker
    count takes its turn: the speed users trade the reference's label bytes for. For
    the panoptic task with `memory_scratch` (a tmpfs), a run at the largest worker count
    writes there: the conversion's own pace, which the disk hides when it is slow.

    Every output is kept until the last run of this task is done, then hashed and deleted.
    """
    task = "panoptic" if panoptic else "semantic"
    variants = [(workers, ()) for workers in workers_list]
    outputs = {(workers, ()): os.path.join(scratch, f"csconv-{task}-w{workers}") for workers in workers_list}
    if not panoptic:
        variants.append((max(workers_list), FAST_PNG))
        outputs[variants[-1]] = os.path.join(scratch, f"csconv-{task}-w{max(workers_list)}-fast")
    elif memory_scratch is not None:
        variants.append((max(workers_list), IN_MEMORY))
        outputs[variants[-1]] = os.path.join(memory_scratch, f"csconv-{task}-w{max(workers_list)}")
    runs: dict[tuple, list] = {variant: [] for variant in variants}
    disk_runs, disk_output, disk_bytes, streams = [], os.path.join(scratch, "disk"), 0, max(workers_list)
    for _ in range(repeat):
        for workers, extra in variants:
            output = outputs[workers, extra]
            fresh_start(root, output)
            flags = () if extra == IN_MEMORY else extra
            runs[workers, extra].append(run_timed(csconv_argv(root, output, panoptic, workers, flags), output))
        if panoptic:
            disk_bytes = folder_bytes(outputs[workers_list[-1], ()])
            fresh_start(root, disk_output)
            disk_runs.append(run_timed(disk_argv(disk_output, disk_bytes, streams), disk_output))
    shutil.rmtree(disk_output, ignore_errors=True)
    measurements = []
    for workers, extra in variants:
        wall, cpu, peak, _ = median_run(runs[workers, extra])
        if extra == IN_MEMORY:
            shown = shlex.join(csconv_argv("R", "/dev/shm/O", panoptic, workers)).replace(sys.executable, "python")
            label = f"csconv {task}, {workers} worker(s), {IN_MEMORY_LABEL}"
        else:
            shown = shlex.join(csconv_argv("R", "O", panoptic, workers, extra)).replace(sys.executable, "python")
            label = f"csconv {task}{' ' + ' '.join(extra) if extra else ''}, {workers} worker(s)"
        measurement = Measurement(label, shown, sum(sizes.values()), sizes["train"] + sizes["val"], wall, cpu, peak)
        measurement.output_bytes = folder_bytes(outputs[workers, extra])
        measurements.append(measurement)
    if disk_runs:
        wall, cpu, peak, _ = median_run(disk_runs)
        disk = Measurement(DISK_ALONE, f"python bench/disk.py O/disk {disk_bytes} {streams}",
                           sum(sizes.values()), sizes["train"] + sizes["val"], wall, cpu, peak)
        disk.output_bytes = disk_bytes
        measurements.append(disk)
    hashes = [shard_hashes(outputs[workers, ()]) for workers in workers_list]
    identical = all(h == hashes[0] for h in hashes) and bool(hashes[0])
    for directory in outputs.values():
        shutil.rmtree(directory)
    return measurements, identical


def bench_floor(root, scratch, sizes, repeat: int) -> Measurement:
    output = os.path.join(scratch, "floor.bin")
    argv = [sys.executable, FLOOR_SCRIPT, root, output]
    wall, cpu, peak, _ = run_repeated(argv, output, repeat, before=lambda: fresh_start(root, output))
    os.unlink(output)
    return Measurement("floor (bench/floor.py)", "python bench/floor.py R O/floor.bin",
                       sum(sizes.values()), sizes["train"] + sizes["val"], wall, cpu, peak)


def disk_argv(output: str, total_bytes: int, streams: int) -> list[str]:
    return [sys.executable, DISK_SCRIPT, output, str(total_bytes), str(streams)]


def count_after(text: str, marker: str) -> int:
    """Sum of the numbers that follow `marker` in a script's output, e.g. 'Processing 10 ...'."""
    total = 0
    for line in text.replace("\r", "\n").splitlines():
        if marker in line:
            total += int(line.split(marker, 1)[1].split()[0])
    return total


@dataclass(frozen=True)
class ReferenceTool:
    name: str  # the row's name
    module: str  # run as `python -m <module>`
    shown: str  # the console script command line it stands for
    count_marker: str  # in its output, followed by the number of frames it processes


def bench_reference_tools(root, scratch, sizes, tools: list[ReferenceTool]) -> tuple[list[Measurement], dict[str, str]]:
    """cityscapesscripts scripts back to back on one fresh copy of gtFine (they write next
    to their inputs); each timed alone. Returns their rows and the SHA-256 of every file
    they wrote, by path relative to the copy (gtFine/...).

    The scripts walk every split they find, test included (csCreatePanopticImgs defaults
    to --set-names val train test; csCreateTrainIdLabelImgs globs gtFine/*/*/), so the
    number of frames is read from their own output rather than assumed.
    """
    copy_root = os.path.join(scratch, "prework-root")
    shutil.rmtree(copy_root, ignore_errors=True)
    shutil.copytree(os.path.join(root, "gtFine"), os.path.join(copy_root, "gtFine"))
    inputs = set(relative_paths(copy_root))
    env = dict(os.environ, CITYSCAPES_DATASET=copy_root)
    measurements = []
    for tool in tools:
        argv = [sys.executable, "-m", tool.module] + tool.shown.split()[1:]
        warm_page_cache(copy_root)
        wall, cpu, peak, stdout = run_timed(argv, os.path.join(scratch, tool.module.rsplit(".", 1)[-1]), env)
        frames = count_after(stdout, tool.count_marker)
        if frames == 0:
            raise SystemExit(f"bench: could not read how many frames {tool.shown} processed from:\n{stdout[-2000:]}")
        measurements.append(Measurement(tool.name, f"CITYSCAPES_DATASET=R {tool.shown}", frames,
                                        sizes["train"] + sizes["val"], wall, cpu, peak))
    written = tree_hashes(copy_root, skip=inputs)
    shutil.rmtree(copy_root)
    return measurements, written


def relative_paths(directory: str) -> list[str]:
    return [os.path.relpath(os.path.join(folder, name), directory)
            for folder, _, names in os.walk(directory) for name in names]


def tree_hashes(directory: str, skip=()) -> dict[str, str]:
    """SHA-256 of every file under directory but those in `skip`, by relative path."""
    hashes = {}
    for relative in relative_paths(directory):
        if relative not in skip:
            with open(os.path.join(directory, relative), "rb") as f:
                hashes[relative] = hashlib.sha256(f.read()).hexdigest()
    return hashes


# -- csconv prework ---------------------------------------------------------------------

PREWORK_FLOOR_SCRIPT = os.path.join(REPO, "bench", "prework_floor.py")
PREWORK_FLOOR = "prework floor (bench/prework_floor.py)"
PREWORK_CHAIN = "cityscapesscripts prework chain: the three above, times summed"
PREWORK_MANIFEST = "csconv-prework-manifest.json"
PREWORK_ORIGINAL_IDS = "csCreatePanopticImgs (original ids)"
PREWORK_AS_REFERENCE = "prework vs cityscapesscripts"


def prework_argv(root: str, output: str, workers: int) -> list[str]:
    return [sys.executable, "-m", "csconv", "prework", "--cityscapes_root", root, "--output_root", output,
            "--workers", str(workers), "--overwrite", "--quiet"]


def bench_csconv_prework(root, scratch, sizes, workers_list: list[int], repeat: int) -> tuple[list[Measurement], dict]:
    """`csconv prework` (default --make) into a scratch --output_root, `repeat` runs per
    worker count, interleaved; then the floor. Returns the rows and each worker count's
    output hashes (manifest left out)."""
    outputs = {workers: os.path.join(scratch, f"csconv-prework-w{workers}") for workers in workers_list}
    runs: dict[int, list] = {workers: [] for workers in workers_list}
    for _ in range(repeat):
        for workers, output in outputs.items():
            fresh_start(root, output)
            runs[workers].append(run_timed(prework_argv(root, output, workers), output))
    frames, labelled = sum(sizes.values()), sizes["train"] + sizes["val"]
    measurements, hashes = [], {}
    for workers, output in outputs.items():
        wall, cpu, peak, _ = median_run(runs[workers])
        shown = shlex.join(prework_argv("R", "O", workers)).replace(sys.executable, "python")
        measurements.append(Measurement(f"csconv prework, {workers} worker(s)", shown, frames, labelled, wall, cpu, peak))
        hashes[workers] = tree_hashes(output, skip=(PREWORK_MANIFEST,))
        shutil.rmtree(output)

    floor_output = os.path.join(scratch, "prework-floor")
    argv = [sys.executable, PREWORK_FLOOR_SCRIPT, root, floor_output]
    wall, cpu, peak, _ = run_repeated(argv, floor_output, repeat, before=lambda: fresh_start(root, floor_output))
    shutil.rmtree(floor_output)
    measurements.append(Measurement(PREWORK_FLOOR, "python bench/prework_floor.py R O", frames, labelled, wall, cpu, peak))
    return measurements, hashes


def chain_measurement(tools: list[Measurement]) -> Measurement:
    """The three reference tools as one contender: what a user waits for before DeepLab2."""
    return Measurement(PREWORK_CHAIN, "the three commands above, one after the other", tools[0].frames,
                       tools[0].labelled, sum(m.wall for m in tools), sum(m.cpu for m in tools),
                       max(m.peak_bytes for m in tools))


# -- targets ----------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    measured: str
    goal: str
    passed: bool | None  # None: not measured in this run


def by_name(measurements: list[Measurement], name: str) -> Measurement | None:
    return next((m for m in measurements if m.name == name), None)


def evaluate_targets(ms: list[Measurement], identical: dict[str, bool]) -> list[Target]:
    pan1 = by_name(ms, "csconv panoptic, 1 worker(s)")
    pan2 = by_name(ms, "csconv panoptic, 2 worker(s)")
    pan2_memory = by_name(ms, f"csconv panoptic, 2 worker(s), {IN_MEMORY_LABEL}")
    sem1 = by_name(ms, "csconv semantic, 1 worker(s)")
    sem2 = by_name(ms, "csconv semantic, 2 worker(s)")
    disk = by_name(ms, DISK_ALONE)
    floor = by_name(ms, "floor (bench/floor.py)")
    cs_pan = by_name(ms, "csCreatePanopticImgs")
    cs_sem = by_name(ms, "csCreateTrainIdLabelImgs")
    targets = []

    def add(name, goal, needed, compute):
        if all(needed):
            value, text, passed = compute()
            targets.append(Target(name, text, goal, passed))
        else:
            targets.append(Target(name, "not measured", goal, None))

    def speedup_pan():
        x = cs_pan.wall_ms_per_labelled / pan2.wall_ms_per_labelled
        return x, f"{x:.1f}x ({cs_pan.wall_ms_per_labelled:.0f} vs {pan2.wall_ms_per_labelled:.1f} ms/labelled frame)", x >= 20

    def speedup_pan_memory():
        x = cs_pan.wall_ms_per_labelled / pan2_memory.wall_ms_per_labelled
        return x, (f"{x:.1f}x ({cs_pan.wall_ms_per_labelled:.0f} vs {pan2_memory.wall_ms_per_labelled:.1f} "
                   "ms/labelled frame)"), x >= 20

    def pan2_per_labelled():
        v = pan2.wall_ms_per_labelled
        return v, f"{v:.1f} ms/labelled frame ({pan2.wall_ms_per_frame:.1f} ms/frame over all frames)", v < 13

    def speedup_sem():
        x = cs_sem.wall_ms_per_labelled / sem2.wall_ms_per_labelled
        return x, f"{x:.2f}x ({cs_sem.wall_ms_per_labelled:.0f} vs {sem2.wall_ms_per_labelled:.1f} ms/labelled frame)", x >= 1.25

    def vs_floor():
        x = pan1.cpu_ms_per_frame / floor.cpu_ms_per_frame
        wall = pan1.wall_ms_per_frame / floor.wall_ms_per_frame
        return x, f"CPU {x:.2f}x ({pan1.cpu_ms_per_frame:.1f} vs {floor.cpu_ms_per_frame:.1f} ms/frame); wall {wall:.2f}x", x <= 2.0

    def scaling():
        x = pan1.wall / pan2.wall
        rate = pan2.output_bytes / pan2.wall / 1e9
        # Cores busy = CPU / wall: below 2 with two workers means they waited, here on the disk.
        text = (f"{x:.2f}x ({pan1.wall:.2f} s -> {pan2.wall:.2f} s; 2 workers write {rate:.2f} GB/s and keep "
                f"{pan2.cpu / pan2.wall:.2f} of {os.cpu_count()} cores busy, 1 worker {pan1.cpu / pan1.wall:.2f})")
        if disk is not None:
            disk_rate = disk.output_bytes / disk.wall / 1e9
            text += (f"; bench/disk.py, writing the same bytes and doing nothing else, took {disk.wall:.2f} s "
                     f"({disk_rate:.2f} GB/s): 1 worker took {pan1.wall / disk.wall:.2f}x that, "
                     f"2 workers {pan2.wall / disk.wall:.2f}x")
        return x, text, x >= 1.7

    def scaling_semantic():
        x = sem1.wall / sem2.wall
        return x, f"{x:.2f}x ({sem1.wall:.2f} s -> {sem2.wall:.2f} s)", x >= 1.7

    def memory():
        peak = max(m.peak_bytes for m in (pan2, sem2) if m is not None) / MIB
        return peak, f"{peak:.0f} MiB (max of panoptic and semantic at 2 workers)", peak < 1024

    add("csconv panoptic (2 workers) vs csCreatePanopticImgs, per labelled frame", ">= 20x faster", [pan2, cs_pan], speedup_pan)
    add("the same, csconv's output on tmpfs (the conversion without the output disk's pace)", ">= 20x faster",
        [pan2_memory, cs_pan], speedup_pan_memory)
    add("csconv panoptic wall per labelled frame, 2 workers", "< 13 ms", [pan2], pan2_per_labelled)
    add("csconv semantic (2 workers) vs csCreateTrainIdLabelImgs, per labelled frame", ">= 1.25x faster", [sem2, cs_sem], speedup_sem)
    add("csconv panoptic 1 worker vs floor, CPU per frame", "<= 2.0x", [pan1, floor], vs_floor)
    add("csconv panoptic throughput, 2 workers vs 1", ">= 1.7x", [pan1, pan2], scaling)
    add("csconv semantic throughput, 2 workers vs 1 (output 4x smaller: not disk-bound)", ">= 1.7x", [sem1, sem2],
        scaling_semantic)
    add("csconv peak memory (sum of RSS of the tree), 2 workers", "< 1024 MiB", [pan2 or sem2], memory)
    if by_name(ms, PREWORK_CHAIN) is not None:
        targets += prework_targets(ms)
    for task, same in identical.items():
        text = "identical" if same else "DIFFERENT"
        if task == PREWORK_AS_REFERENCE:
            targets.append(Target("csconv prework files vs the cityscapesscripts chain's", text,
                                  "the same files, SHA-256 of each equal", same))
        else:
            targets.append(Target(f"csconv {task} output bytes, all worker counts", text,
                                  "SHA-256 of every output file equal", same))
    return targets


def prework_targets(ms: list[Measurement]) -> list[Target]:
    pw1, pw2 = by_name(ms, "csconv prework, 1 worker(s)"), by_name(ms, "csconv prework, 2 worker(s)")
    chain, floor = by_name(ms, PREWORK_CHAIN), by_name(ms, PREWORK_FLOOR)
    targets = []
    if pw2 is not None:
        x = chain.wall_ms_per_frame / pw2.wall_ms_per_frame
        text = f"{x:.1f}x ({chain.wall_ms_per_frame:.0f} vs {pw2.wall_ms_per_frame:.1f} ms/frame)"
        targets.append(Target("csconv prework (2 workers) vs the cityscapesscripts chain, wall per frame", text,
                              ">= 5x faster", x >= 5))
        peak = pw2.peak_bytes / MIB
        targets.append(Target("csconv prework peak memory (sum of RSS of the tree), 2 workers", f"{peak:.0f} MiB",
                              "< 1024 MiB", peak < 1024))
    if pw1 is not None:
        x = pw1.cpu_ms_per_frame / floor.cpu_ms_per_frame
        text = (f"CPU {x:.2f}x ({pw1.cpu_ms_per_frame:.1f} vs {floor.cpu_ms_per_frame:.1f} ms/frame); "
                f"wall {pw1.wall_ms_per_frame / floor.wall_ms_per_frame:.2f}x")
        targets.append(Target("csconv prework 1 worker vs prework floor, CPU per frame", text, "<= 1.5x", x <= 1.5))
    return targets


# -- the report -------------------------------------------------------------------------


def results_table(ms: list[Measurement]) -> list[str]:
    lines = [
        "| contender | frames | wall s | wall ms/frame | wall ms/labelled frame | CPU ms/frame | peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in ms:
        lines.append(
            f"| {m.name} | {m.frames} | {m.wall:.2f} | {m.wall_ms_per_frame:.1f} | {m.wall_ms_per_labelled:.1f} "
            f"| {m.cpu_ms_per_frame:.1f} | {m.peak_bytes / MIB:.0f} |"
        )
    return lines


def targets_table(targets: list[Target]) -> list[str]:
    lines = ["| target | measured | goal | result |", "|---|---|---|---|"]
    for t in targets:
        result = "n/a" if t.passed is None else ("PASS" if t.passed else "FAIL")
        lines.append(f"| {t.name} | {t.measured} | {t.goal} | {result} |")
    return lines


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total() -> str:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    return "unknown"


def versions() -> str:
    import numpy
    import PIL

    import csconv

    try:
        scripts = importlib.metadata.version("cityscapesScripts")
    except importlib.metadata.PackageNotFoundError:
        scripts = "?"
    return (f"Python {platform.python_version()}, numpy {numpy.__version__}, Pillow {PIL.__version__}, "
            f"csconv {csconv.__version__}, cityscapesscripts {scripts}")


@dataclass
class Section:
    """One data set and everything measured on it."""

    title: str
    description: str
    sizes: dict[str, int]
    measurements: list[Measurement]
    targets: list[Target]


def memory_folder() -> str | None:
    """A scratch folder on /dev/shm when it is a tmpfs with room for a large output, else None."""
    if not os.path.isdir("/dev/shm"):
        return None
    stat = os.statvfs("/dev/shm")
    if stat.f_bavail * stat.f_frsize < 8 << 30:
        return None
    return tempfile.mkdtemp(prefix="csconv-bench-", dir="/dev/shm")


def run_section(root: str, sizes: dict[str, int], args, scratch: str,
                memory_scratch: str | None = None) -> tuple[list[Measurement], list[Target]]:
    ms = [bench_floor(root, scratch, sizes, args.repeat)]
    identical = {}
    for panoptic in (True, False):
        runs, same = bench_csconv(root, scratch, sizes, panoptic, args.workers, args.repeat, memory_scratch)
        ms += runs
        identical["panoptic" if panoptic else "semantic"] = same
    # csCreatePanopticImgs stops (exit 255) on a split it finds no instanceIds in.
    set_names = "" if "test" in sizes else " --set-names " + " ".join(sizes)
    panoptic_module = "cityscapesscripts.preparation.createPanopticImgs"
    tools = [
        ReferenceTool("csCreateTrainIdLabelImgs", "cityscapesscripts.preparation.createTrainIdLabelImgs",
                      "csCreateTrainIdLabelImgs", "Processing "),
        ReferenceTool("csCreatePanopticImgs", panoptic_module, "csCreatePanopticImgs --use-train-id" + set_names,
                      "Converting "),
    ]
    if args.prework:
        tools.append(ReferenceTool(PREWORK_ORIGINAL_IDS, panoptic_module, "csCreatePanopticImgs" + set_names,
                                   "Converting "))
    reference_runs, reference_files = bench_reference_tools(root, scratch, sizes, tools)
    ms += reference_runs
    if args.prework:
        ms.append(chain_measurement(reference_runs))
        runs, hashes = bench_csconv_prework(root, scratch, sizes, args.workers, args.repeat)
        ms += runs
        first = hashes[args.workers[0]]
        identical["prework"] = bool(first) and all(h == first for h in hashes.values())
        identical[PREWORK_AS_REFERENCE] = first == reference_files
    return ms, evaluate_targets(ms, identical)


def section_lines(section: Section) -> list[str]:
    return [
        f"## {section.title}",
        "",
        section.description,
        "",
        "### Results",
        "",
        *results_table(section.measurements),
        "",
        "### Targets",
        "",
        *targets_table(section.targets),
        "",
    ]


def report(args, sections: list[Section], load_at_start) -> str:
    lines = [
        "# csconv benchmark",
        "",
        f"Written by `{shlex.join(['python', 'bench/run.py', *sys.argv[1:]])}` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}. Replaced on every run.",
        "",
        "## Machine",
        "",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores",
        f"- Memory: {memory_total()}",
        f"- Load average when the run started: {load_at_start}",
        f"- {platform.system()} {platform.release()}; {versions()}",
        "",
        "Inputs come from a warm page cache: before every timed run the benchmark reads all of that "
        "contender's input files once, untimed, so no contender pays for disk reads the others do not.",
        "",
    ]
    for section in sections:
        lines += section_lines(section)
    lines += [
        "## Method",
        "",
        "- Each contender is one subprocess, run one after the other. Wall time includes interpreter start-up "
        "and imports, so small runs overstate the per-frame cost.",
        "- CPU = user + sys of the whole process tree (`getrusage(RUSAGE_CHILDREN)` before/after).",
        f"- Peak memory = the largest sum of RSS over the process tree, sampled every {SAMPLE_SECONDS * 1000:.0f} ms "
        "from /proc. Pages shared between a parent and its forked workers are counted in every "
        "process that maps them, so this is an upper bound.",
        "- ms/frame divides by the frames the contender processes; ms/labelled frame divides by train + val. "
        "The cityscapesscripts scripts process the test split too (their frame count is read from their output), "
        "but only the labelled frames are needed before DeepLab2's own conversion.",
        "- The cityscapesscripts scripts run on a fresh copy of gtFine/ (they write next to their inputs); "
        "the copy is made before the clock starts. They, csconv and the floor all run as "
        "`<this python> -m <module>` (what the console scripts call), so no launcher shim is timed.",
        "- Output identity: every worker count's output is kept until the last run of that task, "
        "then the SHA-256 of every file is compared.",
        f"- csconv and the floor run {args.repeat} times each and the run with the median wall time is "
        "reported (peak memory: the worst run); csconv's worker counts take turns (1, 2, 1, 2, ...) so "
        "that a drift of the machine's speed does not favour one of them. Before each run the previous output is deleted, the disk "
        f"synced and left {args.settle:g} s to settle (trimming deleted gigabytes slows the next run), "
        "then the inputs are read once into the page cache. The prework scripts run once.",
        "- The panoptic output is 8 MiB of raw label per labelled frame. \"Disk alone\" "
        "(bench/disk.py) writes the same number of bytes as csconv's panoptic output, split over "
        "as many files written at once as csconv's largest worker count, in 8 MiB O_DIRECT writes "
        "plus fdatasync and nothing else; it takes its turn after each round of csconv panoptic "
        "runs. It shows how close a run is to the pace of the disk, which limits how much a second "
        "worker can add. It is a reference, not a strict bound: this VM's disk varies by tens of "
        "percent from one run to the next.",
        "- \"Output on tmpfs\": the same panoptic run at the largest worker count, writing to /dev/shm, in "
        "turn with the others. It is the conversion's own pace: when the output disk is slow (this VM's disk "
        "has measured from 0.4 to 1.8 GB/s across sessions), writing 8 MiB of raw label per frame sets the "
        "pace of the disk row instead. Users with fast disks see the tmpfs figure; DeepLab2's format "
        "leaves no way to write fewer bytes.",
        "- Before timing, csconv's modules are byte-compiled (`compileall`), as a regular `pip install` does.",
        "- The floor (bench/floor.py) does only the unavoidable work of the panoptic conversion in one process: read each "
        "image and its PNG header; for labelled frames read, decode (imagecodecs' libpng) and table-map the "
        "16-bit instanceIds PNG; "
        "CRC32C the output bytes; write them to one file in 8 MiB O_DIRECT writes, as csconv does.",
        "- `csconv prework` (default --make: labelTrainIds, panoptic_trainId, panoptic) writes under a scratch "
        "--output_root; the cityscapesscripts chain is csCreateTrainIdLabelImgs, csCreatePanopticImgs --use-train-id "
        "and csCreatePanopticImgs run one after the other on one copy of gtFine/, each timed alone; the chain's row "
        "sums them (peak memory: the largest). Every file csconv wrote is compared with the chain's, by SHA-256. "
        "The prework floor (bench/prework_floor.py) does only the unavoidable work in one process: parse each "
        "polygons JSON and draw its polygons with Pillow, decode each instanceIds PNG and table-map it to the "
        "panoptic colours, save every output PNG with Pillow's default settings (the panoptic one twice), and a "
        "JSON of segment areas per split.",
        "",
        "Commands (R = the Cityscapes root of the section, O = a scratch folder on the same disk):",
        "",
        *[f"- {m.name}: `{m.command}`" for m in sections[0].measurements],
        "",
    ]
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------


# Sections other scripts write into the same report (bench/api.py), kept when it is rewritten.
KEPT_SECTION = re.compile(r"<!-- (bench/\S+): start -->.*?<!-- \1: end -->\n?", re.S)


def kept_sections(path: str) -> str:
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return ""
    return "".join(match.group(0) for match in KEPT_SECTION.finditer(text))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, required=True, help="synthetic frames in all (>= 3)")
    parser.add_argument("--workers-list", default="1,2", help="csconv worker counts to time (default 1,2)")
    parser.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"), help="markdown report to (over)write")
    parser.add_argument("--cache", help="synthetic data folder (default bench/.cache/<w>x<h>-<frames>-seed0)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of csconv and of the floor, the median is reported (default 3; "
                        "the prework scripts run once: they take minutes and vary little)")
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                        help="seconds to let the disk settle after deleting the previous run's output (default 2)")
    parser.add_argument("--real-frames", type=int, default=140,
                        help="frames made from the real ones in --real-source, train and val (default 140; 0: skip)")
    parser.add_argument("--real-source", default=REAL_SOURCE,
                        help="real Cityscapes frames to copy (default ../shared/cityscapes-real beside the repository)")
    parser.add_argument("--prework", action=argparse.BooleanOptionalAction, default=True,
                        help="also time `csconv prework` against the three cityscapesscripts tools it replaces "
                        "and bench/prework_floor.py (default on)")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1024)
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers_list.split(",") if w.strip()]
    if not args.workers or min(args.workers) < 1:
        parser.error("--workers-list needs positive integers")
    if args.cache is None:
        args.cache = os.path.join(REPO, "bench", ".cache", f"{args.width}x{args.height}-{args.frames}-seed{SEED}")
    args.cache = os.path.abspath(args.cache)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    global SETTLE_SECONDS
    SETTLE_SECONDS = args.settle
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    sizes = split_sizes(args.frames)
    ensure_cache(args.cache, sizes, args.width, args.height)
    data_sets = [(
        "Synthetic frames", args.cache, sizes,
        f"{sum(sizes.values())} synthetic frames of {args.width}x{args.height} from `csconv.synthetic` (seed {SEED}): "
        f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']}; "
        f"labelled frames = train + val = {sizes['train'] + sizes['val']}.",
    )]
    if args.real_frames and os.path.isdir(args.real_source):
        real_sizes = real_split_sizes(args.real_frames)
        real_cache = os.path.join(os.path.dirname(args.cache), f"real-{args.real_frames}")
        ensure_real_cache(real_cache, args.real_source, real_sizes)
        data_sets.append((
            "Real frames", real_cache, real_sizes,
            f"{sum(real_sizes.values())} frames copied under new names from the "
            f"{len(os.listdir(os.path.join(args.real_source, 'leftImg8bit', 'train', 'aachen')))} real 2048x1024 "
            f"frames of the official download in `{os.path.relpath(args.real_source, REPO)}` (every file of each: "
            f"image, instanceIds, labelIds, color, polygons): train {real_sizes['train']}, val {real_sizes['val']}, "
            "no test split (the real frames carry full labels, which the download's test split does not).",
        ))
    elif args.real_frames:
        print(f"bench: {args.real_source} not found; the real-frame section is skipped")
    # What a regular pip install does; an editable install would otherwise recompile
    # csconv's modules in every timed run where PYTHONDONTWRITEBYTECODE is set.
    compileall.compile_dir(os.path.join(REPO, "csconv"), quiet=1)
    # Scratch output next to the cache: same disk, and never inside the cached tree.
    scratch = tempfile.mkdtemp(prefix="bench-run-", dir=os.path.dirname(args.cache))
    memory_scratch = memory_folder()
    sections = []
    try:
        for title, root, set_sizes, description in data_sets:
            print(f"bench: {title.lower()} ({root})")
            ms, targets = run_section(root, set_sizes, args, scratch, memory_scratch)
            sections.append(Section(title, description, set_sizes, ms, targets))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if memory_scratch is not None:
            shutil.rmtree(memory_scratch, ignore_errors=True)
    text = report(args, sections, load_at_start)
    kept = kept_sections(args.out)
    with open(args.out, "w") as f:
        f.write(text + ("\n" + kept if kept else ""))
    for section in sections:
        print("\n".join([f"## {section.title}", *results_table(section.measurements), "",
                         *targets_table(section.targets), ""]))
    print(f"bench: report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
