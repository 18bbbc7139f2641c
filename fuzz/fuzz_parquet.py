"""Parquet shards as csconv reads them (verify's read_shard, csconv.read()'s ParquetShard):
pyarrow's reader of the file, then csconv's reading of the rows (sample_from_row)."""

import os
import tempfile

from common import read_shard_as_csconv_does, run
from csconv.sinks.parquet import ParquetSink

PATH = os.path.join(tempfile.mkdtemp(prefix="csconv-fuzz-parquet-"), "train-00000-of-00001.parquet")
SINK = ParquetSink()


def test_one_input(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    read_shard_as_csconv_does(SINK, PATH)


if __name__ == "__main__":
    run(test_one_input)
