"""TFRecord shards as csconv reads them (verify, csconv.read(), verify --against): the framing
(tfrecord_format.iter_records, and index_records + check_record for random access) and
the hand-written tf.train.Example parser behind sample_from_example.

The first byte picks how the rest is read: as a shard, or as a shard whose length and data
CRCs are then made right, so mutations get past the checksums into the Example parser.
"""

import struct

from common import run, shard_file_harness, tfrecord_format
from csconv.sinks.tfrecord import TFRecordSink


def fix_crcs(data: bytes) -> bytes:
    """The same records with both CRCs of each made right; a length running past the end
    is left as it is (the reader must call that truncated)."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        length_bytes = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        body = data[pos + 12 : pos + 12 + length]
        out.append(length_bytes + struct.pack("<I", tfrecord_format.masked_crc32c(length_bytes)))
        if len(body) < length:
            out.append(data[pos + 12 :])
            return b"".join(out)
        out += [body, struct.pack("<I", tfrecord_format.masked_crc32c(body))]
        pos += 16 + length
    out.append(data[pos:])
    return b"".join(out)


test_one_input = shard_file_harness(TFRecordSink(), "train-00000-of-00001.tfrecord", repair=fix_crcs)

if __name__ == "__main__":
    run(test_one_input)
