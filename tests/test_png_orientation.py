"""Which leftImg8bit PNGs may be copied without decoding, against the reference's reading.

DeepLab2 opens every image with Pillow, applies the EXIF orientation and takes the size
from the result; the image bytes it stores are the file's. csconv copies an RGB PNG and
reads its size from IHDR unless a chunk might carry an orientation. These tests build
PNGs with every chunk and text keyword Pillow reads an orientation from, with and
without one, and compare csconv with that reference reading.
"""

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from csconv.core import png

REAL = Path(__file__).resolve().parents[2] / "shared" / "cityscapes-real"
ORIENTATION = 0x0112
ROTATE_90 = 6  # the stored image is turned a quarter: width and height swap
WIDTH, HEIGHT = 5, 3


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def exif_bytes(orientation: int | None) -> bytes:
    exif = Image.Exif()
    if orientation:
        exif[ORIENTATION] = orientation
    exif[0x0131] = "csconv test"  # Software: EXIF that is there but says nothing of orientation
    return exif.tobytes()


def raw_profile(orientation: int | None) -> bytes:
    # ImageMagick's layout: blank line, profile name, length, hex dump.
    data = exif_bytes(orientation)
    return f"\nexif\n{len(data):8d}\n{data.hex()}\n".encode()


def xmp_packet(orientation: int | None) -> bytes:
    attribute = f' tiff:Orientation="{orientation}"' if orientation else ""
    return ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            f'xmlns:tiff="http://ns.adobe.com/tiff/1.0/"{attribute}/></rdf:RDF></x:xmpmeta>').encode()


# Every text keyword Pillow 13 reads EXIF or XMP from (PngImagePlugin's text chunks,
# Image.getexif), with the payload each one is written with.
KEYWORDS = {
    b"exif": exif_bytes,
    b"Raw profile type exif": raw_profile,
    b"XML:com.adobe.xmp": xmp_packet,
    b"xmp": xmp_packet,
}


def text_chunk(kind: str, keyword: bytes, text: bytes) -> bytes:
    if kind == "tEXt":
        return chunk(b"tEXt", keyword + b"\0" + text)
    if kind == "zTXt":
        return chunk(b"zTXt", keyword + b"\0\0" + zlib.compress(text))
    compressed = kind == "iTXt-z"
    body = zlib.compress(text) if compressed else text
    return chunk(b"iTXt", keyword + b"\0" + bytes([compressed, 0]) + b"\0\0" + body)


def png_with(extra: bytes, mode: str = "RGB", after_idat: bool = False) -> bytes:
    """A small non-square PNG with `extra` chunks right after IHDR or right before IEND."""
    image = Image.new("RGB", (WIDTH, HEIGHT))
    image.putdata([(10 * i, 255 - 10 * i, 7 * i % 256) for i in range(WIDTH * HEIGHT)])
    out = io.BytesIO()
    image.convert(mode).save(out, format="png")
    data = out.getvalue()
    cut = len(data) - 12 if after_idat else 8 + 25
    return data[:cut] + extra + data[cut:]


def reference(data: bytes) -> tuple[bytes, int, int]:
    """DeepLab2's reading (Pillow, orientation applied, a TypeError from Pillow ignored),
    and for a non-RGB image the RGB re-encoding the contract asks for."""
    image = Image.open(io.BytesIO(data))
    try:
        image = ImageOps.exif_transpose(image)
    except TypeError:
        pass
    if image.mode != "RGB":
        out = io.BytesIO()
        image.convert("RGB").save(out, format="png")
        data = out.getvalue()
    return data, image.height, image.width


CASES = [
    pytest.param(kind, keyword, orientation, after, id=f"{kind}-{keyword.decode()}-{orientation}-{where}")
    for kind in ("tEXt", "zTXt", "iTXt", "iTXt-z")
    for keyword in KEYWORDS
    for orientation in (None, ROTATE_90)
    for after, where in ((False, "before-IDAT"), (True, "after-IDAT"))
]


@pytest.mark.parametrize("kind, keyword, orientation, after_idat", CASES)
def test_orientation_text_gives_the_reference_result(kind, keyword, orientation, after_idat):
    data = png_with(text_chunk(kind, keyword, KEYWORDS[keyword](orientation)), after_idat=after_idat)
    assert not png.inspect(data, "x.png").plain, "an orientation keyword must take the slow path"
    assert png.rgb_image(data, "x.png") == reference(data)


@pytest.mark.parametrize("orientation", [None, ROTATE_90])
@pytest.mark.parametrize("after_idat", [False, True])
def test_exif_chunk_gives_the_reference_result(orientation, after_idat):
    data = png_with(chunk(b"eXIf", exif_bytes(orientation)[len(b"Exif\0\0"):]), after_idat=after_idat)
    assert not png.inspect(data, "x.png").plain
    assert png.rgb_image(data, "x.png") == reference(data)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
@pytest.mark.parametrize("keyword", [b"exif", b"XML:com.adobe.xmp"])
def test_rotated_non_rgb_images_are_reencoded_like_the_reference(mode, keyword):
    data = png_with(text_chunk("tEXt", keyword, KEYWORDS[keyword](ROTATE_90)), mode=mode)
    ours = png.rgb_image(data, "x.png")
    assert ours == reference(data)
    assert (ours[1], ours[2]) == (WIDTH, HEIGHT)


def test_the_cases_do_rotate():
    # Without this, a matrix in which Pillow rotated nothing would pass with any fast path.
    rotated = {
        (kind, keyword)
        for kind in ("tEXt", "zTXt", "iTXt")
        for keyword in KEYWORDS
        if reference(png_with(text_chunk(kind, keyword, KEYWORDS[keyword](ROTATE_90))))[1:] == (WIDTH, HEIGHT)
    }
    assert ("tEXt", b"exif") in rotated
    for kind in ("tEXt", "zTXt", "iTXt"):
        assert (kind, b"Raw profile type exif") in rotated
        assert (kind, b"XML:com.adobe.xmp") in rotated
    eXIf = png_with(chunk(b"eXIf", exif_bytes(ROTATE_90)[6:]))
    assert reference(eXIf)[1:] == (WIDTH, HEIGHT)


@pytest.mark.parametrize("kind", ["tEXt", "zTXt", "iTXt", "iTXt-z"])
@pytest.mark.parametrize("after_idat", [False, True])
def test_date_text_keeps_the_fast_path(kind, after_idat):
    stamp = b"2015-12-02T13:50:29+01:00"
    extra = text_chunk(kind, b"date:create", stamp) + text_chunk(kind, b"date:modify", stamp)
    data = png_with(extra, after_idat=after_idat)
    assert png.inspect(data, "x.png").plain
    image, height, width = png.rgb_image(data, "x.png")
    assert image is data  # copied, not re-encoded
    assert (image, height, width) == reference(data)


def test_real_cityscapes_ancillary_chunks_keep_the_fast_path():
    header = chunk(b"gAMA", struct.pack(">I", 45455)) + chunk(b"sRGB", b"\0") + chunk(
        b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
    ) + chunk(b"bKGD", bytes.fromhex("00ff00ff00ff")) + chunk(b"pHYs", struct.pack(">IIB", 72, 72, 0))
    data = png_with(header)
    assert png.inspect(data, "x.png").plain
    assert png.rgb_image(data, "x.png") == reference(data)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Cityscapes frames not present at {REAL}")
def test_real_frames_take_the_fast_path():
    frames = sorted((REAL / "leftImg8bit").rglob("*_leftImg8bit.png"))
    assert frames
    for path in frames:
        data = path.read_bytes()
        info = png.inspect(data, str(path))
        assert info.colour_type == png.COLOUR_RGB and info.plain, path
        image, height, width = png.rgb_image(data, str(path))
        assert image is data
        assert (image, height, width) == reference(data)
