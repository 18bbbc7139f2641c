"""PNG facts read from the file structure, without decoding pixels."""

from __future__ import annotations

import io
import struct

# zlib-ng's CRC-32 (via imagecodecs, already needed for labels): 0.15 ms for a 3 MB
# image where zlib.crc32 takes 0.8 ms, and every image's chunks are checked.
from imagecodecs import zlibng_crc32 as crc32
from dataclasses import dataclass

from .errors import CsconvError, InputError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_RGB = 2
# DeepLab2 takes the size from the image after EXIF orientation, and Pillow (13) finds
# an orientation in an eXIf chunk, or in a text chunk keyed 'exif', 'Raw profile type
# exif', 'XML:com.adobe.xmp' or 'xmp'. Other chunks, other text (every real Cityscapes
# frame carries 'date:create' and 'date:modify') change nothing Pillow reports, and
# sending them to the slow path costs a full decode per frame.
_EXIF_CHUNK = b"eXIf"
_TEXT_CHUNKS = {b"tEXt", b"zTXt", b"iTXt"}


def _text_may_orient(keyword: bytes) -> bool:
    """Whether Pillow might read an orientation from a text chunk with this keyword.

    Wider than Pillow's exact keywords on purpose: any spelling of EXIF or XMP, and
    every ImageMagick 'Raw profile type ...' (APP1 holds EXIF or XMP), so that a Pillow
    that learns another spelling still gets the slow path; a wrong fast path would give
    the wrong size, a wrong slow path only costs time.
    """
    folded = keyword.lower()
    return b"exif" in folded or b"xmp" in folded or folded.startswith(b"raw profile type")


@dataclass(frozen=True)
class PngInfo:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    plain: bool  # no chunk from which Pillow could read an EXIF orientation
    interlaced: bool
    idat: tuple[tuple[int, int], ...]  # (start, end) of each IDAT chunk's data

    def compressed_pixels(self, data) -> bytes:
        """The zlib stream of the image: every IDAT chunk's data, joined."""
        view = memoryview(data)
        return b"".join(view[start:end] for start, end in self.idat)


# Pillow's Image.MAX_IMAGE_PIXELS, where it starts to warn of a decompression bomb: a
# 40 KB PNG can claim 20000x20000 pixels and inflate to gigabytes. A Cityscapes frame
# is 2 M pixels; --max_pixels raises the limit for larger data.
DEFAULT_MAX_PIXELS = 89_478_485
_max_pixels = DEFAULT_MAX_PIXELS


def set_max_pixels(limit: int) -> int:
    """Make `limit` the most pixels a PNG header may claim in this process; returns the old one.

    A process-wide setting rather than an argument: it guards every PNG read however
    deep, and changes no output byte, so it stays out of ConvertOptions and fingerprints.
    """
    global _max_pixels
    previous, _max_pixels = _max_pixels, check_max_pixels(limit)
    return previous


def check_max_pixels(limit) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise CsconvError(f"--max_pixels must be a whole number above 0, got {limit!r}")
    return limit


def check_size(width: int, height: int, path: str, what: str = "header") -> None:
    """An InputError unless a claimed image size is non-empty and within --max_pixels."""
    if width < 1 or height < 1:
        raise InputError(path, f"{what} claims {width}x{height} pixels, an empty image")
    if width * height > _max_pixels:
        raise InputError(path, f"{what} claims {width}x{height} pixels, more than --max_pixels ({_max_pixels:,})")


def inspect(data: bytes | memoryview, path: str, check_crc: bool = True) -> PngInfo:
    """Walk the chunks: header facts, and an InputError naming `path` on any damage.

    Every PNG csconv decodes passes here first, so the size a header claims is refused
    here (check_size), before anything is inflated.
    """
    view = memoryview(data)
    if bytes(view[:8]) != SIGNATURE:
        raise InputError(path, "not a PNG file (bad signature)")
    pos, size = 8, len(view)
    header: tuple[int, ...] | None = None
    plain = True
    idat = []
    while True:
        if pos + 8 > size:
            raise InputError(path, "truncated PNG (no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", view, pos)
        end = pos + 8 + length + 4
        if end > size:
            raise InputError(path, f"truncated PNG (chunk {kind.decode('latin-1')!r} cut short)")
        if check_crc:
            (stored,) = struct.unpack_from(">I", view, end - 4)
            if crc32(view[pos + 4 : end - 4]) != stored:
                raise InputError(path, f"corrupt PNG (CRC mismatch in chunk {kind.decode('latin-1')!r})")
        if header is None:
            if kind != b"IHDR" or length != 13:
                raise InputError(path, "corrupt PNG (first chunk is not IHDR)")
            header = struct.unpack_from(">IIBBBBB", view, pos + 8)
            check_size(header[0], header[1], path)
        elif kind == b"IHDR":
            # Pillow takes the last IHDR before the image data for the size, so a second
            # one would be decoded at a size check_size never saw; libpng refuses it too.
            raise InputError(path, "corrupt PNG (a second IHDR chunk)")
        elif kind == b"IDAT":
            idat.append((pos + 8, end - 4))
        elif kind == _EXIF_CHUNK:
            plain = False
        elif kind in _TEXT_CHUNKS and plain:
            # Pillow takes the keyword as everything up to the first NUL (all of the
            # data when there is none), whatever the 79-byte limit of the PNG spec.
            keyword = bytes(view[pos + 8 : end - 4]).split(b"\0", 1)[0]
            plain = not _text_may_orient(keyword)
        if kind == b"IEND":
            break
        pos = end
    width, height, bit_depth, colour_type, compression, filtering, interlace = header
    # Decoders differ on values the spec does not define (Pillow takes any non-zero
    # interlace for Adam7), so they are damage, named here once.
    if compression != 0 or filtering != 0 or interlace > 1:
        raise InputError(
            path, f"corrupt PNG (IHDR: compression {compression}, filter {filtering}, interlace {interlace}; "
            f"only 0, 0 and 0 or 1 exist)",
        )
    return PngInfo(width, height, bit_depth, colour_type, plain, interlace != 0, tuple(idat))


def rgb_image(data: bytes, path: str, check_crc: bool = True) -> tuple[bytes, int, int]:
    """The image bytes DeepLab2 stores, with height and width.

    An RGB PNG is kept byte for byte; anything else is decoded, converted to RGB and
    re-encoded the way the reference does it (Pillow, EXIF orientation applied).
    """
    info = inspect(data, path, check_crc)
    if info.colour_type == COLOUR_RGB and info.plain:
        return data, info.height, info.width
    return _normalise_with_pillow(data, path)


def encode_label(image, compress_level: int | None = None) -> bytes:
    """A label image as PNG bytes.

    None saves with Pillow's default settings, as cityscapesscripts saves its labels,
    so the bytes are the ones DeepLab2 stores; a level 0-9 changes the bytes (and the
    time spent), never the pixels.
    """
    out = io.BytesIO()
    image.save(out, format="png", **({} if compress_level is None else {"compress_level": compress_level}))
    return out.getvalue()


def check_compress_level(level) -> int | None:
    """`level` if it is None or a zlib level 0-9; a CsconvError naming the flag otherwise."""
    if level is not None and (isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9):
        raise CsconvError(
            f"--png_compress_level must be a whole number from 0 to 9 (leave it out for Pillow's "
            f"default, the reference's bytes), got {level!r}"
        )
    return level


def parse_compress_level(text: str | None) -> int | None:
    """The command line's --png_compress_level, checked before any work."""
    if text is None:
        return None
    try:
        level = int(text)
    except ValueError:
        level = text
    return check_compress_level(level)


def check_decodes(data: bytes, path: str) -> None:
    """`--decode_check`: raise InputError(path, ...) unless the PNG decodes completely.

    The structural walk checks chunk CRCs only; damage inside the compressed pixel data
    whose CRCs were made to match shows only in a full decode.
    """
    from PIL import Image

    inspect(data, path)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Image.DecompressionBombError:
        raise InputError(path, _too_many_pixels(data)) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise InputError(path, f"PNG pixel data does not decode ({error})") from None


def _normalise_with_pillow(data: bytes, path: str) -> tuple[bytes, int, int]:
    from PIL import Image, ImageOps

    try:
        image = Image.open(io.BytesIO(data))
        try:
            image = ImageOps.exif_transpose(image)
        except TypeError:
            pass
        if image.mode != "RGB":
            image = image.convert("RGB")
            out = io.BytesIO()
            image.save(out, format="png")
            data = out.getvalue()
        width, height = image.size
    except Image.DecompressionBombError:
        raise InputError(path, _too_many_pixels(data)) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise InputError(path, f"cannot decode image ({error})") from None
    return data, height, width


def _too_many_pixels(data: bytes) -> str:
    from PIL import Image

    width, height = struct.unpack_from(">II", data, 16)  # IHDR, already checked by inspect()
    return (
        f"header claims {width}x{height} pixels, more than Pillow decodes "
        f"({2 * Image.MAX_IMAGE_PIXELS:,}, its decompression bomb limit)"
    )
