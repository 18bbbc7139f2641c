"""The PNG chunk walker and the image path: png.inspect, png.rgb_image, png.check_decodes."""

from common import CsconvError, png, png_input, run


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
