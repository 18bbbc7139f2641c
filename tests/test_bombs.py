"""Decompression bombs: refused by what they claim, before anything is inflated.

The crafted files are real bombs (a PNG whose valid zlib stream inflates to 800 MB, a
zip member that inflates to 300 MB), and the real command line runs them in a process
whose address space is capped at 1.5 GB: a run that inflated first would die of
MemoryError or be killed, not end with the one-line error.
"""

from __future__ import annotations

import json
import resource
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest

from conftest import console_script, subprocess_env

ADDRESS_SPACE = 1536 * 2**20
SIDE = 20000  # 20000x20000 16-bit grayscale: 800 MB of pixels


def zeros_zlib(total: int, chunk: int) -> bytes:
    """A valid zlib stream of `total` zero bytes (a multiple of `chunk`), without making them.

    After a full flush deflate starts afresh, so one flushed block of `chunk` zeros can be
    repeated; the Adler-32 of n zeros is (n mod 65521) << 16 | 1.
    """
    assert total % chunk == 0
    compressor = zlib.compressobj(9)
    head = compressor.compress(b"")  # the 2-byte zlib header
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH) == block
    final_empty_block = b"\x03\x00"
    adler = ((total % 65521) << 16) | 1
    return head + block * (total // chunk) + final_empty_block + struct.pack(">I", adler)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int, bit_depth: int, colour_type: int, bytes_per_pixel: int) -> bytes:
    row = 1 + width * bytes_per_pixel
    stream = zeros_zlib(row * height, row * 100)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def gray16_bomb() -> bytes:
    return bomb_png(SIDE, SIDE, 16, 0, 2)


def test_the_bomb_is_real(gray16_bomb):
    """Small on disk, 800 MB inflated: what the refusal protects against."""
    assert len(gray16_bomb) < 1_000_000
    inflated = 0
    inflater = zlib.decompressobj()
    stream = gray16_bomb[8 + 25 + 8 : -12 - 4]
    for start in range(0, len(stream), 65536):
        inflated += len(inflater.decompress(stream[start : start + 65536]))
    assert inflated == SIDE * (1 + 2 * SIDE)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    from csconv.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("bombs") / "cityscapes"
    generate_dataset(root, {"train": 2, "val": 1}, width=64, height=32, seed=0)
    return root


@pytest.fixture
def root(pristine, tmp_path):
    copy = tmp_path / "cityscapes"
    shutil.copytree(pristine, copy)
    return copy


def first_val(root: Path, suffix: str) -> Path:
    if suffix == "leftImg8bit.png":
        return next((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))
    return next((root / "gtFine" / "val").glob(f"*/*_gtFine_{suffix}"))


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_capped(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """The real console script, its address space capped, converting into tmp_path/out."""
    return subprocess.run(
        [console_script("csconv"), *args, "--output_dir", str(tmp_path / "out"), "--workers", "1", "--quiet"],
        capture_output=True, text=True, env=subprocess_env(), preexec_fn=_cap_memory, timeout=300,
    )


def assert_one_line_error(done: subprocess.CompletedProcess, *needles: str) -> str:
    lines = [line for line in done.stderr.splitlines() if not line.startswith("csconv: warning:")]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("csconv: error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    "suffix, extra, make",
    [
        ("instanceIds.png", [], lambda: bomb_png(SIDE, SIDE, 16, 0, 2)),
        ("leftImg8bit.png", [], lambda: bomb_png(SIDE, SIDE, 8, 2, 3)),
        ("leftImg8bit.png", ["--decode_check"], lambda: bomb_png(SIDE, SIDE, 8, 2, 3)),
        ("labelIds.png", ["--create_panoptic_data=false", "--source", "labelids"], lambda: bomb_png(SIDE, SIDE, 8, 0, 1)),
    ],
    ids=["instanceIds", "image", "image-decode-check", "labelIds"],
)
def test_png_bomb_is_refused_by_its_header(root, tmp_path, suffix, extra, make):
    target = first_val(root, suffix)
    target.write_bytes(make())
    done = run_capped(["--cityscapes_root", str(root), "--splits", "val", *extra], tmp_path)
    assert_one_line_error(
        done, f"{target}: header claims {SIDE}x{SIDE} pixels, more than --max_pixels (89,478,485)"
    )


def test_polygons_json_of_absurd_size_is_refused_before_drawing(root, tmp_path):
    target = first_val(root, "polygons.json")
    doc = json.loads(target.read_text())
    doc["imgWidth"], doc["imgHeight"] = 200_000, 100_000
    target.write_text(json.dumps(doc))
    done = run_capped(["--cityscapes_root", str(root), "--splits", "val", "--create_panoptic_data=false"], tmp_path)
    assert_one_line_error(done, f"{target}: polygons JSON claims 200000x100000 pixels, more than --max_pixels")


@pytest.mark.parametrize("width, height", [(0, 32), (64, -5)])
def test_polygons_json_of_empty_size_is_refused(root, tmp_path, width, height):
    target = first_val(root, "polygons.json")
    doc = json.loads(target.read_text())
    doc["imgWidth"], doc["imgHeight"] = width, height
    target.write_text(json.dumps(doc))
    done = run_capped(["--cityscapes_root", str(root), "--splits", "val", "--create_panoptic_data=false"], tmp_path)
    assert_one_line_error(done, f"{target}: polygons JSON claims {width}x{height} pixels, an empty image")


def test_max_pixels_flag_sets_the_limit(root, tmp_path):
    image = first_val(root, "leftImg8bit.png")
    done = run_capped(["--cityscapes_root", str(root), "--splits", "val", "--max_pixels", "2000"], tmp_path)
    assert_one_line_error(done, f"{image}: header claims 64x32 pixels, more than --max_pixels (2,000)")
    done = run_capped(["--cityscapes_root", str(root), "--splits", "val", "--max_pixels", "2048"], tmp_path)
    assert done.returncode == 0, done.stderr


def make_archives(root: Path, folder: Path) -> tuple[Path, Path]:
    folder.mkdir()
    made = []
    for name, top in (("gtFine_trainvaltest.zip", "gtFine"), ("leftImg8bit_trainvaltest.zip", "leftImg8bit")):
        with zipfile.ZipFile(folder / name, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted((root / top).rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(root).as_posix())
        made.append(folder / name)
    return made[0], made[1]


def replace_member_with_zeros(archive: Path, member: str, size: int) -> None:
    """Re-write `archive` with `member` holding `size` zero bytes, deflated (a thousandfold)."""
    rebuilt = archive.with_suffix(".new")
    with zipfile.ZipFile(archive) as old, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as new:
        for info in old.infolist():
            if info.filename != member:
                new.writestr(info, old.read(info))
        with new.open(member, "w", force_zip64=True) as out:
            block = bytes(2**20)
            for _ in range(size // len(block)):
                out.write(block)
    rebuilt.replace(archive)


def member_of(archive: Path, suffix: str) -> str:
    return next(n for n in zipfile.ZipFile(archive).namelist() if n.endswith(suffix) and "/val/" in n)


def test_zip_member_declaring_an_absurd_size_is_refused_before_reading(root, tmp_path):
    gtfine_zip, _ = make_archives(root, tmp_path / "zips")
    member = member_of(gtfine_zip, "_instanceIds.png")
    replace_member_with_zeros(gtfine_zip, member, 300 * 2**20)
    assert gtfine_zip.stat().st_size < 2 * 2**20
    done = run_capped(["--cityscapes_root", str(tmp_path / "zips"), "--splits", "val"], tmp_path)
    assert_one_line_error(
        done, f"{gtfine_zip}::{member}: archive member declares 314,572,800 bytes uncompressed, more than the "
        f"67,108,864 a file of its kind may have",
    )


def test_zip_member_inflating_beyond_its_declared_size_is_corrupt(root, tmp_path):
    gtfine_zip, _ = make_archives(root, tmp_path / "zips")
    member = member_of(gtfine_zip, "_polygons.json")
    replace_member_with_zeros(gtfine_zip, member, 300 * 2**20)
    # The central directory now claims 1 MB; the data still inflates to 300 MB.
    raw = bytearray(gtfine_zip.read_bytes())
    start = raw.rindex(member.encode()) - 46
    assert raw[start : start + 4] == b"PK\x01\x02"
    assert struct.unpack_from("<I", raw, start + 24)[0] == 300 * 2**20  # its uncompressed size
    struct.pack_into("<I", raw, start + 24, 2**20)
    gtfine_zip.write_bytes(bytes(raw))
    done = run_capped(
        ["--cityscapes_root", str(tmp_path / "zips"), "--splits", "val", "--create_panoptic_data=false"], tmp_path
    )
    assert_one_line_error(done, f"{gtfine_zip}::{member}: corrupt archive member (Bad CRC-32")


def test_sample_arrays_refuse_a_bomb_before_inflating_it():
    """A record read back (csconv.read, a sink's reader) is input too: its decoded views
    check the header's size against --max_pixels before Pillow inflates anything."""
    from csconv.core.errors import InputError
    from csconv.core.records import Sample

    bomb = bomb_png(20000, 20000, 8, 0, 1)
    sample = Sample("val", "frankfurt_000000_000294", bomb, "png", 20000, 20000, 3, bomb, "png")
    for view in (sample.image_array, sample.label_array):
        with pytest.raises(InputError, match=r"more than --max_pixels"):
            view()
