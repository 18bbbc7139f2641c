"""Stand-ins for DeepLab2's own output: TFRecord shards written by TensorFlow itself.

DeepLab2 builds each tf.train.Example with TensorFlow's protobuf and writes it with
tf.io.TFRecordWriter; the order the feature map comes out in depends on how the map
was filled. `copy_through_tensorflow` makes such a folder from a csconv output: every
record parsed by TensorFlow, rebuilt with its features inserted in reverse order,
written by TensorFlow, and no manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

LABEL_KEY = "image/segmentation/class/encoded"


def copy_through_tensorflow(source: Path, target: Path, edit: Callable | None = None) -> int:
    """Copy every *.tfrecord of `source` into `target` as described above.

    `edit(shard_name, record_index, example)` may change the rebuilt tf.train.Example
    before it is written. Returns how many records came out with bytes other than the
    source's (the caller's guard that the order really changed).
    """
    import tensorflow as tf

    target.mkdir(parents=True)
    reordered = 0
    for path in sorted(source.glob("*.tfrecord")):
        with tf.io.TFRecordWriter(str(target / path.name)) as writer:
            for index, serialized in enumerate(tf.data.TFRecordDataset(str(path))):
                original = serialized.numpy()
                parsed = tf.train.Example.FromString(original)
                example = tf.train.Example()
                for key in sorted(parsed.features.feature, reverse=True):
                    example.features.feature[key].CopyFrom(parsed.features.feature[key])
                if edit is not None:
                    edit(path.name, index, example)
                data = example.SerializeToString()
                reordered += data != original
                writer.write(data)
    return reordered


def set_label_pixel(example, row: int, col: int, value: int) -> int:
    """Set one pixel of a raw int32 panoptic label in place; returns its old value."""
    feature = example.features.feature
    height = feature["image/height"].int64_list.value[0]
    width = feature["image/width"].int64_list.value[0]
    label = np.frombuffer(feature[LABEL_KEY].bytes_list.value[0], "<i4").reshape(height, width).copy()
    old = int(label[row, col])
    assert old != value, "the edit must change the pixel"
    label[row, col] = value
    feature[LABEL_KEY].bytes_list.value[0] = label.tobytes()
    return old
