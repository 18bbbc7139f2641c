"""WebDataset tar shards as csconv reads them: verify's read_shard (webdataset's tar
expansion, grouping by key and decoding, then sample_from_wds) and csconv.read()'s TarShard
(tarfile's listing, members read by offset).

webdataset's and tarfile's Python code is instrumented too: it is the parser here. The
first byte picks how the rest is read: as a tar, or as a tar whose header checksums are
then made right, so mutations of the headers get past tarfile's check.
"""

import os
import tempfile

import atheris

with atheris.instrument_imports(include=["webdataset", "tarfile"]):
    import tarfile

    import webdataset.autodecode
    import webdataset.tariterators

from common import read_shard_as_csconv_does, run  # noqa: E402
from csconv.sinks.webdataset import WebDatasetSink  # noqa: E402

PATH = os.path.join(tempfile.mkdtemp(prefix="csconv-fuzz-webdataset-"), "train-00000.tar")
SINK = WebDatasetSink()


def fix_checksums(data: bytes) -> bytes:
    """Each 512-byte block that looks like a header gets the checksum its bytes add up to."""
    out = bytearray(data)
    for start in range(0, len(out) - 511, 512):
        block = out[start : start + 512]
        if block[257:262] != b"ustar":
            continue
        block[148:156] = b"        "
        out[start + 148 : start + 156] = b"%06o\0 " % (sum(block) & 0o777777)
    return bytes(out)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    shard = fix_checksums(data[1:]) if data[0] & 1 else data[1:]
    with open(PATH, "wb") as f:
        f.write(shard)
    read_shard_as_csconv_does(SINK, PATH)


if __name__ == "__main__":
    run(test_one_input)
