"""A minimal third-party sink: JSON lines, binary fields as base64.

The environment variable CSCONV_JSONL_MISBEHAVE lets csconv's tests make this plugin
fail the ways real plugins do: "import", "register", or "duplicate" (claims the
name 'tfrecord').
"""

import base64
import json
import os

import numpy as np

from csconv.core.records import Sample
from csconv.hookspecs import hookimpl
from csconv.sinks.base import ShardWriter, Sink

MISBEHAVE = os.environ.get("CSCONV_JSONL_MISBEHAVE", "")
if MISBEHAVE == "import":
    raise ImportError("this plugin is broken on purpose")


class JsonlWriter(ShardWriter):
    def __init__(self, stream):
        self.stream = stream

    def write(self, sample: Sample) -> None:
        label = sample.label_bytes()
        row = {
            "split": sample.split,
            "filename": sample.filename,
            "image": base64.b64encode(sample.image).decode(),
            "image_format": sample.image_format,
            "height": sample.height,
            "width": sample.width,
            "channels": sample.channels,
            "label": None if label is None else base64.b64encode(label).decode(),
            "label_format": sample.label_format,
        }
        self.stream.write((json.dumps(row) + "\n").encode())


class JsonlSink(Sink):
    name = "tfrecord" if MISBEHAVE == "duplicate" else "jsonl"
    description = "JSON lines, binary fields in base64 (test plugin)"

    def shard_name(self, split, index, num_shards):
        return f"{split}-{index:05d}-of-{num_shards:05d}.jsonl"

    def open_writer(self, stream):
        return JsonlWriter(stream)

    def read_shard(self, path):
        with open(path, "rb") as f:
            for line in f:
                row = json.loads(line)
                label = row["label"] and base64.b64decode(row["label"])
                if row["label_format"] == "raw":
                    label = np.frombuffer(label, dtype="<i4").reshape(row["height"], row["width"])
                yield Sample(
                    split=row["split"], filename=row["filename"], image=base64.b64decode(row["image"]),
                    image_format=row["image_format"], height=row["height"], width=row["width"],
                    channels=row["channels"], label=label, label_format=row["label_format"],
                )


@hookimpl
def register_sinks(register):
    if MISBEHAVE == "register":
        raise RuntimeError("register_sinks is broken on purpose")
    register(JsonlSink)
