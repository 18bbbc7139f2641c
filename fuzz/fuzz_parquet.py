"""Parquet shards as csconv reads them (verify's read_shard, csconv.read()'s ParquetShard):
pyarrow's reader of the file, then csconv's reading of the rows (sample_from_row)."""

from common import run, shard_file_harness
from csconv.sinks.parquet import ParquetSink

test_one_input = shard_file_harness(ParquetSink(), "train-00000-of-00001.parquet")

if __name__ == "__main__":
    run(test_one_input)
