"""ShardFile: the bytes, the checksums and the atomic rename, with and without O_DIRECT."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from csconv.storage import local as output
from csconv.storage.local import OutputError, ShardFile, file_digests, temp_name

BLOCK = output._BLOCK


def parts_of(sizes: list[int], seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in sizes]


def write(directory, name: str, parts, direct: bool, sha256: bool = True) -> ShardFile:
    shard = ShardFile(str(directory), name, sha256=sha256, direct=direct)
    for part in parts:
        shard.write(part)
    shard.commit()
    return shard


# Sizes around the staging block and the 4096-byte O_DIRECT unit: exactly full blocks, one
# byte over, a big part spanning several blocks, and an empty file.
EDGE_SIZES = [
    [],
    [1],
    [4096],
    [4097],
    [BLOCK],
    [BLOCK, 1],
    [BLOCK - 1, 2, 4095],
    [3 * BLOCK + 123],
    [10, 7 * BLOCK + 5, 4096, 0, 99],
]


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
@pytest.mark.parametrize("sizes", EDGE_SIZES, ids=lambda s: "+".join(map(str, s)) or "empty")
def test_the_file_holds_exactly_the_bytes_written(tmp_path, direct, sizes):
    parts = parts_of(sizes, seed=len(sizes))
    expected = b"".join(parts)
    shard = write(tmp_path, "a.bin", parts, direct)
    data = (tmp_path / "a.bin").read_bytes()
    assert data == expected
    assert shard.size == len(expected)
    assert shard.digests == {"crc32c": f"{crc32c(expected):08x}", "sha256": hashlib.sha256(expected).hexdigest()}
    assert shard.digests == file_digests(str(tmp_path / "a.bin"), ("crc32c", "sha256"))
    assert os.listdir(tmp_path) == ["a.bin"]


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 70_000), max_size=12), seed=st.integers(0, 2**16))
def test_direct_and_buffered_files_are_identical(tmp_path_factory, sizes, seed):
    folder = tmp_path_factory.mktemp("shards")
    parts = parts_of(sizes, seed)
    direct = write(folder, "direct.bin", parts, direct=True)
    buffered = write(folder, "buffered.bin", parts, direct=False)
    assert (folder / "direct.bin").read_bytes() == (folder / "buffered.bin").read_bytes() == b"".join(parts)
    assert direct.digests == buffered.digests


def test_direct_io_is_used_where_the_file_system_allows_it(tmp_path):
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this platform")
    shard = ShardFile(str(tmp_path), "a.bin")
    try:
        probe = os.open(str(tmp_path / "probe"), os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    except OSError:
        assert not shard.direct
    else:
        os.close(probe)
        assert shard.direct
    shard.abort()


def test_a_file_system_refusing_direct_writes_falls_back_to_the_page_cache(tmp_path, monkeypatch):
    real_pwrite = os.pwrite
    refused = []

    def pwrite(fd, data, offset):
        if hasattr(os, "O_DIRECT") and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(offset)
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(output.os, "pwrite", pwrite)
    parts = parts_of([BLOCK + 5000, 3], seed=1)
    shard = write(tmp_path, "a.bin", parts, direct=True)
    assert (tmp_path / "a.bin").read_bytes() == b"".join(parts)
    assert not shard.direct
    assert refused == ([0] if hasattr(os, "O_DIRECT") else [])


def test_a_write_error_names_the_shard_and_leaves_nothing(tmp_path, monkeypatch):
    def pwrite(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output.os, "pwrite", pwrite)
    shard = ShardFile(str(tmp_path), "a.bin")
    with pytest.raises(OutputError, match=f"{tmp_path / 'a.bin'}: output disk full"):
        shard.write(b"x" * (BLOCK + 1))
        shard.commit()
    shard.abort()
    assert os.listdir(tmp_path) == []


def test_an_aborted_shard_leaves_no_file_and_nothing_under_its_final_name(tmp_path):
    shard = ShardFile(str(tmp_path), "a.bin")
    shard.write(b"y" * (2 * BLOCK + 17))
    assert (tmp_path / temp_name("a.bin")).exists()
    shard.abort()
    assert os.listdir(tmp_path) == []


def test_forked_writers_do_not_share_staging_blocks(tmp_path):
    # Staging blocks are kept for the next shard of a process; a worker forked after the
    # parent wrote a file inherits them and must get its own copy, or workers overwrite
    # each other's output.
    write(tmp_path, "parent.bin", [b"p" * (BLOCK + 1)], direct=True)
    assert output._spare_blocks
    block = output._spare_blocks[-1]
    block[:6] = b"parent"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        block[:6] = b"child!"
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert block[:6] == b"parent"


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
def test_parts_with_a_known_crc_give_the_same_digest_as_plain_writes(tmp_path, direct):
    parts = parts_of([12, BLOCK + 3, 4, 70_000, 9], seed=5)
    shard = ShardFile(str(tmp_path), "a.bin", direct=direct)
    shard.write(parts[0])
    shard.writelines_with_crc32c(parts[1:3], crc32c(parts[1] + parts[2]))
    shard.write(parts[3])
    shard.writelines_with_crc32c([parts[4], b""], crc32c(parts[4]))
    shard.commit()
    assert (tmp_path / "a.bin").read_bytes() == b"".join(parts)
    assert shard.digests == file_digests(str(tmp_path / "a.bin"), ("crc32c",))


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
def test_digests_read_midway_leave_the_file_intact(tmp_path, direct):
    parts = parts_of([100, 3996, BLOCK, 5], seed=9)
    shard = ShardFile(str(tmp_path), "a.bin", sha256=True, direct=direct)
    written = b""
    for part in parts:
        shard.write(part)
        written += part
        assert shard.digests == {"crc32c": f"{crc32c(written):08x}", "sha256": hashlib.sha256(written).hexdigest()}
    shard.commit()
    assert (tmp_path / "a.bin").read_bytes() == written
    assert shard.digests == file_digests(str(tmp_path / "a.bin"), ("crc32c", "sha256"))


def test_a_direct_write_refused_after_the_first_block_is_written_again_buffered(tmp_path, monkeypatch):
    real_pwrite = os.pwrite

    def pwrite(fd, data, offset):
        # Like a device that wants more alignment than 4096 bytes, or a short write:
        # only the partial last block is refused.
        if hasattr(os, "O_DIRECT") and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT and len(data) < BLOCK:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(output.os, "pwrite", pwrite)
    parts = parts_of([2 * BLOCK + 11_000], seed=2)
    shard = write(tmp_path, "a.bin", parts, direct=True)
    assert (tmp_path / "a.bin").read_bytes() == parts[0]
    assert shard.digests == file_digests(str(tmp_path / "a.bin"), ("crc32c", "sha256"))


def test_a_padded_last_block_may_cross_the_file_size_limit(tmp_path):
    # The padding of the last O_DIRECT block goes past RLIMIT_FSIZE though the shard
    # itself fits: the block is written again without padding.
    script = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({BLOCK + 12_000}, {BLOCK + 12_000}))
from csconv.storage.local import ShardFile
shard = ShardFile(sys.argv[1], "a.bin")
shard.write(b"z" * {BLOCK + 11_000})
shard.commit()
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.bin").read_bytes() == b"z" * (BLOCK + 11_000)
