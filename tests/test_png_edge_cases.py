"""Integer edge cases of PNG headers and image data: each is the one-line InputError.

Sizes near 2**31 and 2**32, products that overflow, image data that inflates to more or
less than the header says, empty images: through every entry point that reads a PNG, and
through both paths of the 16-bit label decoder (the C unfilter and the Pillow fallback).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from csconv.core import panoptic, png, semantic
from csconv.core.errors import InputError

REGRESSIONS = Path(__file__).parent / "fuzz_regressions"


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes, interlace: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture(params=["c-unfilter", "fallback"])
def decoder(request, monkeypatch):
    """decode_instance_ids by each of its two paths."""
    if request.param == "c-unfilter":
        if panoptic._pngunfilter is None:
            pytest.skip("the C extension is not built here")
    else:
        monkeypatch.setattr(panoptic, "_pngunfilter", None)
    return panoptic.decode_instance_ids


def readers():
    """Every entry point that takes PNG bytes and a path."""
    return {
        "inspect": png.inspect,
        "rgb_image": png.rgb_image,
        "check_decodes": png.check_decodes,
        "decode_instance_ids": panoptic.decode_instance_ids,
        "gray8_size": lambda data, path: semantic.gray8_size(data, path, "labelTrainIds"),
        "panoptic_from_segments": lambda data, path: panoptic.panoptic_from_segments(data, [], path),
    }


@pytest.mark.parametrize("reader", readers().values(), ids=readers().keys())
@pytest.mark.parametrize(
    "width, height, needle",
    [
        (2**31 - 1, 1, "more than --max_pixels"),
        (1, 2**31 - 1, "more than --max_pixels"),
        (2**31, 2**31, "more than --max_pixels"),
        (2**32 - 1, 2**32 - 1, "more than --max_pixels"),
        (65536, 65536, "more than --max_pixels"),  # the product is 2**32: zero in 32 bits
        (0, 16, "an empty image"),
        (16, 0, "an empty image"),
        (0, 0, "an empty image"),
    ],
)
def test_header_sizes_are_refused_before_decoding(reader, width, height, needle):
    data = make_png(width, height, 16, 0, b"\0" * 64)
    with pytest.raises(InputError) as caught:
        reader(data, "edge.png")
    assert str(caught.value) == f"edge.png: header claims {width}x{height} pixels, {needle}" + (
        " (89,478,485)" if "max_pixels" in needle else ""
    )


@pytest.mark.parametrize("width, height", [(2**31 - 1, 2**31 - 1), (2**32 - 1, 3), (3, 2**32 - 1)])
def test_overflowing_row_bytes_times_height_is_refused_with_the_limit_lifted(decoder, width, height):
    """With --max_pixels out of the way, row_bytes * height no longer fits anything:
    the decoder must say so, not wrap around or crash."""
    previous = png.set_max_pixels(2**64)
    try:
        with pytest.raises(InputError, match="^edge.png: cannot decode label PNG"):
            decoder(make_png(width, height, 16, 0, b"\0" * 64), "edge.png")
    finally:
        png.set_max_pixels(previous)


def test_c_unfilter_refuses_sizes_whose_product_overflows():
    """Products that wrap to the buffer's length (here 0) must not pass the size check."""
    if panoptic._pngunfilter is None:
        pytest.skip("the C extension is not built here")
    for height, row_bytes in [(2**32, 2**32 - 1), (2**33, 2**31 - 1), (2**62, 3), (1, 2**63 - 1)]:
        with pytest.raises(ValueError, match="wrong size"):
            panoptic._pngunfilter.unfilter(b"", height, row_bytes, 2, True)


@pytest.mark.parametrize("rows", [0, 1, 3, 5, 8, 100000], ids=lambda r: f"{r}-of-4-rows")
def test_image_data_inflating_to_more_or_less_than_the_header_says(decoder, rows):
    """A 4x4 16-bit label whose stream holds `rows` rows: only 4 decode."""
    raw = (b"\0" + b"\x01\x02" * 4) * rows
    data = make_png(4, 4, 16, 0, raw)
    if rows == 4:
        assert decoder(data, "edge.png").tolist() == [[0x0102] * 4] * 4
        return
    with pytest.raises(InputError, match="^edge.png: cannot decode label PNG"):
        decoder(data, "edge.png")


def test_stream_pillow_pads_with_zeros_is_refused():
    """Fuzzing finding (label16, differential): Pillow decodes a 16-bit PNG whose stream
    ends rows early, filling the rest with zeros; libpng says "Not enough image data".
    csconv refuses it, on both paths: a label with silently invented pixels is wrong."""
    from PIL import Image

    data = make_png(14, 47, 16, 0, b"\0" + b"\x89" * 28)
    assert np.asarray(Image.open(io.BytesIO(data))).shape == (47, 14)  # Pillow's leniency
    for unfilter in (panoptic._pngunfilter, None):
        saved, panoptic._pngunfilter = panoptic._pngunfilter, unfilter
        try:
            with pytest.raises(InputError, match="cannot decode label PNG"):
                panoptic.decode_instance_ids(data, "edge.png")
        finally:
            panoptic._pngunfilter = saved


def test_the_fuzzed_input_of_that_finding_is_refused(decoder):
    """The PNG the fuzzer built (kept under tests/fuzz_regressions/): 14x47, 29 bytes of rows."""
    data = (REGRESSIONS / "label16_short_stream_pillow_pads.png").read_bytes()
    with pytest.raises(InputError, match="cannot decode label PNG"):
        decoder(data, "edge.png")


def test_bad_filter_type_is_refused(decoder):
    data = make_png(2, 2, 16, 0, b"\x05\0\0\0\0" * 2)
    with pytest.raises(InputError, match="cannot decode label PNG"):
        decoder(data, "edge.png")


def test_label_ids_png_whose_data_does_not_inflate():
    """--source labelids decoded with Pillow outside any guard: a valid header and CRCs
    over a broken zlib stream was an OSError traceback (found reading the code while
    writing the harnesses)."""
    data = make_png(4, 4, 8, 0, b"")
    start = data.index(b"IDAT") + 4
    broken = b"\x78\x9c garbage"
    data = data[: start - 8] + chunk(b"IDAT", broken) + data[data.index(b"IEND") - 4 :]
    with pytest.raises(InputError, match=r"^edge.png: cannot decode labelIds PNG \("):
        semantic.semantic_png_from_label_ids(data, "edge.png")
