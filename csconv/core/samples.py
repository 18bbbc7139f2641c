"""Turning one frame into one Sample. Pure per-frame work, so worker processes can run it."""

from __future__ import annotations

import json

from . import panoptic, png, semantic
from .errors import CsconvError, InputError
from .records import ConvertOptions, Frame, Sample, Source, Task
from .sources import Location, read_file

TEST_SPLIT = "test"


Annotation = tuple[str, list]  # (panoptic PNG file name, segments_info) from the prework JSON


def load_prepared_annotations(labels_base: Location, split: str) -> dict[str, Annotation]:
    """image_id -> annotation, from gtFine/cityscapes_panoptic_<split>_trainId.json."""
    path = labels_base.join(f"cityscapes_panoptic_{split}_trainId.json")
    try:
        doc = json.loads(read_file(path))
        annotations = {}
        for entry in doc["annotations"]:
            image_id = entry["image_id"]
            if image_id in annotations:
                raise InputError(path, f"image id {image_id!r} appears twice")
            annotations[image_id] = (entry["file_name"], entry["segments_info"])
    except InputError:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(path, f"malformed panoptic JSON ({error.__class__.__name__}: {error})") from None
    return annotations


def prepared_panoptic_path(frame: Frame, file_name: str) -> Location:
    folder = f"cityscapes_panoptic_{frame.split}_trainId"
    return frame.labels_base.join(folder, file_name)


def build_sample(
    frame: Frame, options: ConvertOptions, annotation: Annotation | None = None, decode_check: bool = False
) -> Sample:
    """`decode_check`: also decode every PNG read in full with Pillow (see png.check_decodes)."""
    image, height, width = png.rgb_image(_read_png(frame.image_path, decode_check), frame.image_path)
    label, label_format = None, None
    if frame.split != TEST_SPLIT:
        label, label_format, (label_height, label_width), label_path = _label(frame, options, annotation, decode_check)
        if (label_height, label_width) != (height, width):
            raise InputError(
                label_path,
                f"label is {label_width}x{label_height} but its image is {width}x{height}",
            )
    return Sample(
        split=frame.split,
        filename=frame.name,
        image=image,
        image_format="png",
        height=height,
        width=width,
        channels=3,
        label=label,
        label_format=label_format,
    )


def _read_png(path: str, decode_check: bool) -> bytes:
    data = read_file(path)
    if decode_check:
        png.check_decodes(data, path)
    return data


def _label(frame: Frame, options: ConvertOptions, annotation: Annotation | None, decode_check: bool):
    if options.task is Task.PANOPTIC:
        if options.source is Source.RAW:
            path = frame.label_path("instanceIds.png")
            ids = panoptic.decode_instance_ids(_read_png(path, decode_check), path)
            label = panoptic.panoptic_from_instance_ids(
                ids, path, options.treat_crowd_as_ignore, options.label_divisor
            )
        else:
            if annotation is None:
                raise CsconvError(f"{frame.image_path}: no entry for {frame.name!r} in the prepared panoptic JSON")
            file_name, segments = annotation
            path = prepared_panoptic_path(frame, file_name)
            label = panoptic.panoptic_from_segments(
                _read_png(path, decode_check), segments, path, options.treat_crowd_as_ignore, options.label_divisor
            )
        return label, "raw", label.shape, path
    if options.source is Source.RAW:
        path = frame.label_path("polygons.json")
        label, size = semantic.semantic_png(read_file(path), path, options.png_compress_level)
    elif options.source is Source.LABEL_IDS:
        path = frame.label_path("labelIds.png")
        label, size = semantic.semantic_png_from_label_ids(
            _read_png(path, decode_check), path, options.png_compress_level
        )
    else:
        # Stored as it is, so its header must already be what DeepLab2 expects.
        path = frame.label_path("labelTrainIds.png")
        label = _read_png(path, decode_check)
        size = semantic.gray8_size(label, path, "labelTrainIds")
    return label, "png", size, path
