"""The prepared source: cityscapes_panoptic_<split>_trainId.json (samples.load_prepared_annotations)
and each annotation's COCO panoptic PNG with its segments (panoptic.panoptic_from_segments).

The input is the JSON and the PNG joined by a separator.
"""

import os
import tempfile

from common import CsconvError, fix_crcs, panoptic, run, samples, sources

FOLDER = tempfile.mkdtemp(prefix="csconv-fuzz-prepared-")
SEPARATOR = b"\n--png--\n"


def test_one_input(data: bytes) -> None:
    doc, _, image = data.partition(SEPARATOR)
    with open(os.path.join(FOLDER, "cityscapes_panoptic_val_trainId.json"), "wb") as f:
        f.write(doc)
    try:
        annotations = samples.load_prepared_annotations(sources.Location(FOLDER), "val")
        segments = [segments for _, segments in annotations.values()] or [[]]
        for treat_crowd_as_ignore in (True, False):
            for entry in segments[:4]:
                panoptic.panoptic_from_segments(fix_crcs(image), entry, "fuzz.png", treat_crowd_as_ignore, 1000)
    except CsconvError:
        pass


if __name__ == "__main__":
    run(test_one_input)
