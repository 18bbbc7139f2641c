"""Inputs the fuzz harnesses (fuzz/) found to break csconv, kept under tests/fuzz_regressions/.

Each must now be the one-line InputError. PNG edge cases the label decoder's fuzzing
found are in test_png_edge_cases.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csconv.core import panoptic, samples
from csconv.core.errors import InputError
from csconv.core.sources import Location
from csconv.storage import zipfs

REGRESSIONS = Path(__file__).parent / "fuzz_regressions"
SEPARATOR = b"\n--png--\n"  # how fuzz/fuzz_prepared.py joins the JSON and the PNG


def prepared(tmp_path, name: str):
    doc, _, image = (REGRESSIONS / name).read_bytes().partition(SEPARATOR)
    (tmp_path / "cityscapes_panoptic_val_trainId.json").write_bytes(doc)
    return samples.load_prepared_annotations(Location(str(tmp_path)), "val"), image


def test_prepared_segment_without_area(tmp_path):
    """fuzz_prepared: a segments_info entry without "area" was a KeyError traceback."""
    annotations, image = prepared(tmp_path, "prepared_segment_without_area.bin")
    (_, segments), = annotations.values()
    with pytest.raises(InputError) as caught:
        panoptic.panoptic_from_segments(image, segments, "a.png")
    assert str(caught.value) == "a.png: segments_info entry 0 is malformed (KeyError: 'area')"


@pytest.mark.parametrize(
    "segments, needle",
    [
        ([{"id": [1], "category_id": 0, "area": 16}], "segments_info entry 0 is malformed (TypeError"),
        ([{"id": "x", "category_id": 0, "area": 16}], "segments_info entry 0 is malformed (ValueError"),
        ([{"id": 1e400, "category_id": 0, "area": 16}], "segments_info entry 0 is malformed (OverflowError"),
        (["segment"], "segments_info entry 0 is malformed (TypeError"),
        ([{"id": 7, "category_id": 10**10, "area": 16}], "segments_info entry 0: category_id 10000000000 is not a trainId"),
        ([{"id": 7, "category_id": -1, "area": 16}], "segments_info entry 0: category_id -1 is not a trainId"),
        (7, "segments_info is malformed"),
    ],
)
def test_malformed_segments_are_one_line(tmp_path, segments, needle):
    """Neighbours of that finding: each field of a segment of the wrong type or range."""
    _, image = prepared(tmp_path, "prepared_segment_without_area.bin")
    with pytest.raises(InputError) as caught:
        panoptic.panoptic_from_segments(image, segments, "a.png")
    assert str(caught.value).startswith(f"a.png: {needle}"), str(caught.value)


def test_the_regression_png_is_otherwise_good(tmp_path):
    """Its PNG and valid segments still convert, so the tests above fail for the segments."""
    _, image = prepared(tmp_path, "prepared_segment_without_area.bin")
    segments = json.loads('[{"id": 0, "category_id": 0, "area": 16}, {"id": 7, "category_id": 13, "area": 16}]')
    label = panoptic.panoptic_from_segments(image, segments, "a.png")
    assert sorted(set(label.ravel().tolist())) == [0, 13001]


def _label_libpng_refuses(interlace: int) -> bytes:
    """A 16-bit grayscale PNG with filter type 9 in its first row: every decoder refuses it."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 32, 16, 16, 0, 0, 0, interlace)
    rows = b"\x09" + b"\0" * 64 + (b"\0" + b"\0" * 64) * 15
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_the_fuzzed_label_that_killed_the_process_is_refused():
    """fuzz_label16's input (interlaced, so the fallback decoder), whose decoding error took
    a reference from None each time (see below): one InputError, repeatably."""
    data = (REGRESSIONS / "label16_interlaced_fatal_none_dealloc.png").read_bytes()
    for _ in range(3):
        with pytest.raises(InputError, match="^a.png: cannot decode label PNG"):
            panoptic.decode_instance_ids(data, "a.png")


def test_interlace_method_2_is_refused_by_the_header():
    """No PNG has interlace method 2; Pillow takes it for Adam7, libpng refuses it: the
    walker refuses it, so both decoder paths agree."""
    with pytest.raises(InputError, match=r"corrupt PNG \(IHDR: compression 0, filter 0, interlace 2"):
        panoptic.decode_instance_ids(_label_libpng_refuses(2), "a.png")


@pytest.mark.parametrize("interlace", [0, 1])
@pytest.mark.parametrize("with_c", [True, False], ids=["c-unfilter", "fallback"])
def test_damaged_labels_do_not_take_references_from_none(monkeypatch, interlace, with_c):
    """fuzz_label16: after a few thousand damaged labels the process died with "Fatal Python
    error: none_dealloc". imagecodecs.png_decode, then the fallback, takes a reference from
    None with every libpng error; Python 3.11's None is not immortal."""
    import gc
    import sys

    if not with_c:
        monkeypatch.setattr(panoptic, "_pngunfilter", None)
    data = _label_libpng_refuses(interlace)
    for _ in range(50):  # caches settle first
        with pytest.raises(InputError):
            panoptic.decode_instance_ids(data, "a.png")
    # The bug took one reference per call; other objects freed meanwhile give back a few.
    gc.collect()
    gc.disable()
    try:
        before = sys.getrefcount(None)
        for _ in range(5000):
            with pytest.raises(InputError):
                panoptic.decode_instance_ids(data, "a.png")
        lost = before - sys.getrefcount(None)
    finally:
        gc.enable()
    assert lost < 1000, f"{lost} references to None lost in 5000 calls"


def test_zip_needing_a_version_zipfile_does_not_know(tmp_path):
    """fuzz_zip: a central directory entry asking for zip version 22.2 made zipfile raise
    NotImplementedError, a traceback where a one-line error belongs."""
    from csconv.core import sources

    archive = tmp_path / "gtFine_trainvaltest.zip"
    archive.write_bytes((REGRESSIONS / "zip_version_22_2.zip").read_bytes())
    with pytest.raises(InputError) as caught:
        zipfs.member_names(str(archive))
    assert str(caught.value) == (
        f"{archive}: a zip archive Python's zipfile cannot read (zip file version 22.2)"
    )


def test_second_ihdr_cannot_claim_a_size_the_header_check_never_saw():
    """fuzz_png (its 30-minute run's log): Pillow warned of 100-million-pixel images the
    harness's 65,536-pixel --max_pixels had let through. Pillow takes the last IHDR before
    the image data for the size; csconv checked the first. A second IHDR is now refused."""
    from csconv.core import png

    data = (REGRESSIONS / "png_second_ihdr_claims_10000x10000.png").read_bytes()
    for read in (png.inspect, png.rgb_image, png.check_decodes):
        with pytest.raises(InputError) as caught:
            read(data, "a.png")
        assert str(caught.value) == "a.png: corrupt PNG (a second IHDR chunk)"


def _shard(tmp_path, regression: str, name: str) -> str:
    path = tmp_path / name
    path.write_bytes((REGRESSIONS / regression).read_bytes())
    return str(path)


def _every_reading(sink, path: str) -> list[InputError]:
    """The InputError of each way csconv reads a shard (verify's scan, csconv.read()'s
    random access); any other exception fails the test."""
    errors = []
    try:
        list(sink.read_shard(path))
    except InputError as error:
        errors.append(error)
    try:
        shard = sink.open_random_access(path)
        try:
            for index in range(len(shard)):
                shard.get(index)
        finally:
            shard.close()
    except InputError as error:
        errors.append(error)
    return errors


@pytest.mark.parametrize("regression, problem", [
    # A tar member's .npy header cut so it is no Python literal: numpy retries it through
    # the tokenizer, whose TokenError is no ValueError.
    ("webdataset_npy_header_tokenerror.tar", "record 0: unreadable (npy header is not a Python literal (TokenError"),
    # A member size in base-256 beyond any file: tarfile's seek raised ValueError.
    ("webdataset_member_size_beyond_offsets.tar", "tar member"),
    # A negative base-256 member size: tarfile's seek raised OSError (EINVAL).
    ("webdataset_member_size_negative.tar", "tar member"),
])
def test_webdataset_shards_fuzz_webdataset_found(tmp_path, regression, problem):
    pytest.importorskip("webdataset")
    from csconv.sinks.webdataset import WebDatasetSink

    path = _shard(tmp_path, regression, "train-00000.tar")
    errors = _every_reading(WebDatasetSink(), path)
    assert errors, "the damaged shard read without an error"
    for error in errors:
        assert error.path == path and error.problem.startswith(problem), str(error)


def test_parquet_column_path_not_utf8(tmp_path):
    """fuzz_parquet: a column name that is not UTF-8 made pyarrow's ParquetFile() raise
    UnicodeDecodeError, where pyarrow's own errors were not caught either."""
    pytest.importorskip("pyarrow")
    from csconv.sinks.parquet import ParquetSink

    path = _shard(tmp_path, "parquet_column_path_not_utf8.parquet", "train-00000-of-00001.parquet")
    errors = _every_reading(ParquetSink(), path)
    assert len(errors) == 2
    for error in errors:
        assert error.path == path and error.problem.startswith("not a readable Parquet file ("), str(error)


def test_parquet_row_group_claiming_negative_rows(tmp_path):
    """fuzz_parquet (its 30-minute run, after 120 s): a row group whose footer claims a
    negative row count made csconv.read()'s shard length negative (`ValueError: __len__()
    should return >= 0`)."""
    pytest.importorskip("pyarrow")
    from csconv.sinks.parquet import ParquetSink

    path = _shard(tmp_path, "parquet_row_group_negative_rows.parquet", "train-00000-of-00001.parquet")
    with pytest.raises(InputError) as caught:
        ParquetSink().open_random_access(path)
    assert caught.value.path == path
    assert caught.value.problem.startswith("not a readable Parquet file (row group 0 claims -"), str(caught.value)


def test_arrayrecord_header_that_fails_the_reader_while_opening(tmp_path):
    """fuzz_arrayrecord (its 30-minute run, after about 15 minutes): a damaged header made
    ArrayRecordReader's constructor itself fail (`ValueError: basic_string::resize`, a C++
    std::length_error through pybind11), which escaped as a traceback from verify, stats,
    preview and csconv.read()."""
    pytest.importorskip("array_record")
    from csconv.sinks.arrayrecord import ArrayRecordSink

    path = _shard(tmp_path, "arrayrecord_header_resize_valueerror.bin", "train-00000-of-00001.array_record")
    errors = _every_reading(ArrayRecordSink(), path)
    assert len(errors) == 2
    for error in errors:
        assert error.path == path and error.problem.startswith("not a readable ArrayRecord file ("), str(error)
