"""ArrayRecord shards as csconv reads them: ArrayRecord's (riegeli's) reader of the file,
sequentially for verify and by index for csconv.read(), then the same Example parser as
TFRecord. The container's chunk headers carry hashes, so most mutations stop there: what
this harness asks is that they stop with csconv's one-line error, never a crash."""

from common import run, shard_file_harness
from csconv.sinks.arrayrecord import ArrayRecordSink

test_one_input = shard_file_harness(ArrayRecordSink(), "train-00000-of-00001.array_record")

if __name__ == "__main__":
    run(test_one_input)
