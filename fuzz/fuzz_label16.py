"""The 16-bit label decoder, panoptic.decode_instance_ids, with Pillow as the oracle.

Both of its paths: the C unfilter (when _pngunfilter is built and the file is not
interlaced) and imagecodecs/libpng (the fallback, taken here by hiding the C module).
Where Pillow decodes a 16-bit grayscale PNG, csconv must return the same pixels; where
Pillow refuses, csconv must refuse with InputError. Pillow's leniency on chunks after the
image data is not a disagreement: csconv walks the whole file to IEND first. A decoded
array then goes through the C lookup (lookup16), checked against numpy's indexing.
"""

import io
import zlib

import numpy as np

from common import InputError, panoptic, png, png_input, run

C_UNFILTER = panoptic._pngunfilter
TABLE = (np.arange(65536, dtype=np.int64) * 7919 % (1 << 31)).astype(np.int32)


def pillow_pixels(data: bytes):
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
                return None
            image.load()
            return np.asarray(image).astype(np.int64)
    except Exception:
        return None


def inflated_size(label: bytes, info) -> int | None:
    try:
        return len(zlib.decompress(info.compressed_pixels(label)))
    except zlib.error:
        return None


def test_one_input(data: bytes) -> None:
    label = png_input(data, bit_depth=16, colour_type=0)
    use_c = data[:1] >= b"\x80"  # the first byte picks the path too: its top bit
    panoptic._pngunfilter = C_UNFILTER if use_c else None
    try:
        ours = panoptic.decode_instance_ids(label, "fuzz.png")
    except InputError:
        ours = None
    finally:
        panoptic._pngunfilter = C_UNFILTER
    if ours is not None:
        # The C lookup (lookup16) over whatever shape the decoder returned.
        mapped = panoptic.map_through(TABLE, ours)
        assert np.array_equal(mapped, TABLE[ours]), "lookup16 and numpy indexing disagree"
    try:
        info = png.inspect(label, "fuzz.png")
    except InputError:
        return  # structural damage csconv refuses before decoding; Pillow may be lenient
    if info.bit_depth != 16 or info.colour_type != 0:
        return
    theirs = pillow_pixels(label)
    if theirs is None:
        assert ours is None, "csconv decoded a 16-bit PNG Pillow refuses"
    else:
        if ours is None and inflated_size(label, info) != info.height * (info.width * 2 + 1):
            # Pillow fills the rows of a stream that ends early (or ignores extra data) without
            # a word, where libpng says "Not enough image data": csconv is strict on purpose.
            return
        assert ours is not None, "csconv refused a 16-bit PNG Pillow decodes"
        assert np.array_equal(ours.astype(np.int64), theirs), "csconv and Pillow decode different pixels"


if __name__ == "__main__":
    run(test_one_input)
