"""Inputs the fuzz harnesses (fuzz/) found to break csconv, kept under tests/fuzz_regressions/.

Each must now be the one-line InputError. PNG edge cases the label decoder's fuzzing
found are in test_png_edge_cases.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csconv.core import panoptic, samples
from csconv.core.errors import InputError
from csconv.core.sources import Location

REGRESSIONS = Path(__file__).parent / "fuzz_regressions"
SEPARATOR = b"\n--png--\n"  # how fuzz/fuzz_prepared.py joins the JSON and the PNG


def prepared(tmp_path, name: str):
    doc, _, image = (REGRESSIONS / name).read_bytes().partition(SEPARATOR)
    (tmp_path / "cityscapes_panoptic_val_trainId.json").write_bytes(doc)
    return samples.load_prepared_annotations(Location(str(tmp_path)), "val"), image


def test_prepared_segment_without_area(tmp_path):
    """fuzz_prepared: a segments_info entry without "area" was a KeyError traceback."""
    annotations, image = prepared(tmp_path, "prepared_segment_without_area.bin")
    (_, segments), = annotations.values()
    with pytest.raises(InputError) as caught:
        panoptic.panoptic_from_segments(image, segments, "a.png")
    assert str(caught.value) == "a.png: segments_info entry 0 is malformed (KeyError: 'area')"


@pytest.mark.parametrize(
    "segments, needle",
    [
        ([{"id": [1], "category_id": 0, "area": 16}], "segments_info entry 0 is malformed (TypeError"),
        ([{"id": "x", "category_id": 0, "area": 16}], "segments_info entry 0 is malformed (ValueError"),
        ([{"id": 1e400, "category_id": 0, "area": 16}], "segments_info entry 0 is malformed (OverflowError"),
        (["segment"], "segments_info entry 0 is malformed (TypeError"),
        ([{"id": 7, "category_id": 10**10, "area": 16}], "segments_info entry 0: category_id 10000000000 is not a trainId"),
        ([{"id": 7, "category_id": -1, "area": 16}], "segments_info entry 0: category_id -1 is not a trainId"),
        (7, "segments_info is malformed"),
    ],
)
def test_malformed_segments_are_one_line(tmp_path, segments, needle):
    """Neighbours of that finding: each field of a segment of the wrong type or range."""
    _, image = prepared(tmp_path, "prepared_segment_without_area.bin")
    with pytest.raises(InputError) as caught:
        panoptic.panoptic_from_segments(image, segments, "a.png")
    assert str(caught.value).startswith(f"a.png: {needle}"), str(caught.value)


def test_the_regression_png_is_otherwise_good(tmp_path):
    """Its PNG and valid segments still convert, so the tests above fail for the segments."""
    _, image = prepared(tmp_path, "prepared_segment_without_area.bin")
    segments = json.loads('[{"id": 0, "category_id": 0, "area": 16}, {"id": 7, "category_id": 13, "area": 16}]')
    label = panoptic.panoptic_from_segments(image, segments, "a.png")
    assert sorted(set(label.ravel().tolist())) == [0, 13001]
