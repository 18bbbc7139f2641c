"""WebDataset tar shards as csconv reads them: verify's read_shard (webdataset's tar
expansion, grouping by key and decoding, then sample_from_wds) and csconv.read()'s TarShard
(tarfile's listing, members read by offset).

webdataset's and tarfile's Python code is instrumented too: it is the parser here. The
first byte picks how the rest is read: as a tar, or as a tar whose header checksums are
then made right, so mutations of the headers get past tarfile's check.
"""


import atheris

with atheris.instrument_imports(include=["webdataset", "tarfile"]):
    import tarfile

    import webdataset.autodecode
    import webdataset.tariterators

from common import run, shard_file_harness  # noqa: E402
from csconv.sinks.webdataset import WebDatasetSink  # noqa: E402


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


test_one_input = shard_file_harness(WebDatasetSink(), "train-00000.tar", repair=fix_checksums)

if __name__ == "__main__":
    run(test_one_input)
