"""ArrayRecord shards as csconv reads them: ArrayRecord's (riegeli's) reader of the file,
sequentially for verify and by index for csconv.read(), then the same Example parser as
TFRecord. The container's chunk headers carry hashes, so most mutations stop there: what
this harness asks is that they stop with csconv's one-line error, never a crash."""

import os
import tempfile

from common import read_shard_as_csconv_does, run
from csconv.sinks.arrayrecord import ArrayRecordSink

PATH = os.path.join(tempfile.mkdtemp(prefix="csconv-fuzz-arrayrecord-"), "train-00000-of-00001.array_record")
SINK = ArrayRecordSink()


def test_one_input(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    read_shard_as_csconv_does(SINK, PATH)


if __name__ == "__main__":
    run(test_one_input)
