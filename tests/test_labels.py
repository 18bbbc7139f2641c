"""The project's own label table against the facts in cityscapesscripts' table."""

import pytest

from csconv.core import labels

cs_labels = pytest.importorskip("cityscapesscripts.helpers.labels")


def test_every_label_matches_cityscapesscripts():
    theirs = {l.name: l for l in cs_labels.labels}
    assert set(theirs) == set(labels.BY_NAME)
    for ours in labels.LABELS:
        other = theirs[ours.name]
        assert (ours.id, ours.train_id, ours.category, ours.has_instances, ours.ignore_in_eval, ours.color) == (
            other.id, other.trainId, other.category, other.hasInstances, other.ignoreInEval, other.color
        ), ours.name


def test_thing_classes_are_deeplab2s():
    assert labels.THING_TRAIN_IDS == frozenset(range(11, 19))
    assert not labels.BY_NAME["caravan"].is_thing and labels.BY_NAME["caravan"].has_instances


@pytest.mark.parametrize(
    "name, expected",
    [("car", "car"), ("cargroup", "car"), ("polegroup", "polegroup"), ("persongroup", "person"), ("nonsense", None)],
)
def test_polygon_names_resolve_like_the_prework(name, expected):
    label = labels.label_for_polygon(name)
    assert (label.name if label else None) == expected
