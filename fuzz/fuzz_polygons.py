"""The polygons JSON: semantic.semantic_png (parse, draw, encode) and instance_train_ids."""

from common import CsconvError, run, semantic


def test_one_input(data: bytes) -> None:
    try:
        semantic.semantic_png(data, "fuzz_polygons.json", compress_level=1)
        semantic.instance_train_ids(semantic.parse_polygons(data, "fuzz_polygons.json"), "fuzz_polygons.json")
    except CsconvError:
        pass


if __name__ == "__main__":
    run(test_one_input)
