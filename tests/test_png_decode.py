"""The instanceIds decoder (zlib-ng + C unfilter) against libpng, on every PNG filter type."""

import struct
import zlib

import imagecodecs
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from csconv.core import panoptic


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filter_rows(raw: np.ndarray, filters: list[int], bpp: int = 2) -> bytes:
    """Apply the PNG filters of the spec, row by row, in the plainest way."""
    out = bytearray()
    previous = np.zeros(raw.shape[1], dtype=np.int64)
    for row, kind in zip(raw.astype(np.int64), filters):
        filtered = []
        for x, value in enumerate(row):
            a = row[x - bpp] if x >= bpp else 0
            b = previous[x]
            c = previous[x - bpp] if x >= bpp else 0
            predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
            filtered.append((value - predictor) % 256)
        out.append(kind)
        out += bytes(filtered)
        previous = row
    return bytes(out)


def gray16_png(pixels: np.ndarray, filters: list[int]) -> bytes:
    height, width = pixels.shape
    raw = pixels.astype(">u2").view(np.uint8).reshape(height, width * 2)
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    idat = zlib.compress(filter_rows(raw, filters))
    # Split the stream over two IDAT chunks, as encoders may.
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat[:7]) + chunk(b"IDAT", idat[7:]) + chunk(b"IEND", b"")


@st.composite
def label_maps(draw):
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 40))
    values = draw(st.lists(st.integers(0, 65535), min_size=1, max_size=4))
    # Runs of a few values, like a label map, so the run fast paths are exercised too.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    blocks = rng.choice(values, size=(height, (width + 7) // 8))
    pixels = np.repeat(blocks, 8, axis=1)[:, :width].astype(np.uint16)
    noise = rng.random((height, width)) < draw(st.sampled_from([0.0, 0.05, 0.5]))
    pixels[noise] = rng.integers(0, 65536, size=int(noise.sum()))
    filters = draw(st.lists(st.integers(0, 4), min_size=height, max_size=height))
    return pixels, filters


@settings(max_examples=150, deadline=None)
@given(label_maps())
def test_every_filter_type_decodes_like_libpng(case):
    pixels, filters = case
    data = gray16_png(pixels, filters)
    assert np.array_equal(imagecodecs.png_decode(data), pixels)  # the hand-made PNG is valid
    decoded = panoptic.decode_instance_ids(data, "x.png")
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, pixels)


def test_the_c_extension_is_built_here():
    # CI installs with a compiler; a silent fallback to libpng would only cost speed,
    # so say so loudly here.
    assert panoptic._pngunfilter is not None


def test_unknown_filter_type_is_a_clear_error():
    data = gray16_png(np.zeros((2, 3), np.uint16), [0, 0])
    # Filter type byte 5 does not exist; the chunk CRCs are valid.
    stream = zlib.compress(bytes([5]) + bytes(6) + bytes([0]) + bytes(6))
    header = struct.pack(">IIBBBBB", 3, 2, 16, 0, 0, 0, 0)
    broken = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    assert panoptic.decode_instance_ids(data, "ok.png").shape == (2, 3)
    with pytest.raises(panoptic.InputError, match=r"bad\.png: cannot decode label PNG \(unknown PNG filter type\)"):
        panoptic.decode_instance_ids(broken, "bad.png")


def test_short_pixel_data_is_a_clear_error():
    header = struct.pack(">IIBBBBB", 3, 2, 16, 0, 0, 0, 0)
    short = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(7))) + chunk(b"IEND", b"")
    with pytest.raises(panoptic.InputError, match="short.png: cannot decode label PNG"):
        panoptic.decode_instance_ids(short, "short.png")
