"""Panoptic ids from instanceIds values, one rule of SPEC §3 per case."""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from csconv.core.errors import InputError
from csconv.core.panoptic import distinct_values, panoptic_from_instance_ids


def convert(values, crowd_ignored=True):
    ids = np.array([values], dtype=np.uint16)
    return panoptic_from_instance_ids(ids, "x.png", crowd_ignored)[0].tolist()


def test_stuff_void_and_unlabeled():
    # road, sky, unlabeled, ego vehicle, parking (ignore-in-eval), polegroup
    assert convert([7, 23, 0, 1, 9, 18]) == [0, 10000, 255000, 255000, 255000, 255000]


def test_instances_are_numbered_per_class_in_ascending_value():
    # Two cars and a person, listed out of order: numbering follows the value.
    assert convert([26005, 24000, 26001, 26005]) == [13002, 11001, 13001, 13002]


def test_crowd_regions():
    assert convert([26, 24, 26000]) == [255000, 255000, 13001]
    assert convert([26, 24, 26000], crowd_ignored=False) == [13000, 11000, 13001]


def test_caravan_trailer_instances_are_ignored():
    assert convert([29000, 30001, 29]) == [255000, 255000, 255000]


def test_stuff_value_above_1000_is_not_an_instance():
    assert convert([7001]) == [0]


@pytest.mark.parametrize("value", [34, 999, 34000, 65535])
def test_unknown_label_id_is_an_error_naming_the_file(value):
    with pytest.raises(InputError, match=r"x\.png: value %d" % value):
        convert([value])


def test_more_than_999_instances_is_an_error():
    assert convert(list(range(26000, 26999)))[-1] == 13999
    with pytest.raises(InputError, match="more than 999 instances of 'car'"):
        convert(list(range(26000, 27000)))


@given(hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, max_side=40), elements=st.integers(0, 65535)))
def test_distinct_values_equal_numpy_unique(array):
    assert np.array_equal(distinct_values(array), np.unique(array))
