"""`--decode_check`: full decodes beyond the structural checks the core makes on its way.

The core reads PNG structure and chunk CRCs without decoding an RGB image (it is copied
byte for byte). Damage inside the compressed pixel data whose chunk CRCs were made to
match goes unnoticed that way; `--decode_check` decodes every PNG of a frame in full
with Pillow to catch it.
"""

from __future__ import annotations

import io

from .core import png
from .core.errors import InputError
from .core.records import ConvertOptions, Frame, Source, Task
from .core.samples import TEST_SPLIT, prepared_panoptic_path
from .core.sources import read_file


def decode_png_fully(path: str) -> None:
    """Raise InputError(path, ...) unless the PNG decodes completely."""
    from PIL import Image

    data = read_file(path)
    png.inspect(data, path)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, ValueError, SyntaxError) as error:
        raise InputError(path, f"PNG pixel data does not decode ({error})") from None


def label_png_path(frame: Frame, options: ConvertOptions, annotation=None) -> str | None:
    """The label PNG a frame's conversion reads, if it reads one."""
    if frame.split == TEST_SPLIT:
        return None
    if options.task is Task.PANOPTIC:
        if options.source is Source.RAW:
            return frame.gtfine_path("instanceIds.png")
        return prepared_panoptic_path(frame, annotation[0]) if annotation else None
    if options.source is Source.LABEL_IDS:
        return frame.gtfine_path("labelIds.png")
    if options.source is Source.PREPARED:
        return frame.gtfine_path("labelTrainIds.png")
    return None  # polygons JSON: drawn by csconv itself


def decode_check(frame: Frame, options: ConvertOptions, annotation=None) -> None:
    decode_png_fully(frame.image_path)
    label = label_png_path(frame, options, annotation)
    if label is not None:
        decode_png_fully(label)
