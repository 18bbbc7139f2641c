"""The PNG chunk walker and the image path: png.inspect, png.rgb_image, png.check_decodes.

Pillow is held to the harness's --max_pixels too: an image csconv lets through to Pillow
at a size its header check never saw (Pillow warns, then refuses, above its own limit)
is a finding.
"""

import warnings

from PIL import Image

from common import CsconvError, png, png_input, run

Image.MAX_IMAGE_PIXELS = 1 << 16  # the harness's --max_pixels (common.py)
warnings.simplefilter("error", Image.DecompressionBombWarning)


def test_one_input(data: bytes) -> None:
    colour = data[1] % 7 if len(data) > 1 else 2
    image = png_input(data, bit_depth=8, colour_type=colour if colour in (0, 2, 3, 4, 6) else 2)
    try:
        info = png.inspect(image, "fuzz.png")
        assert info.width * info.height <= 1 << 16
        png.rgb_image(image, "fuzz.png")
        png.check_decodes(image, "fuzz.png")
    except CsconvError:
        pass


if __name__ == "__main__":
    run(test_one_input)
