"""Converting straight from the two official zip archives, without unpacking them."""

import os
import shutil
import zipfile

import pytest

from csconv.core import discover
from csconv.core.errors import CsconvError, InputError
from csconv.core.records import ConvertOptions, Task
from csconv.core.samples import build_sample
from csconv.core.sources import EXTRA_IMAGES_ZIP, GTCOARSE_ZIP, GTFINE_ZIP, IMAGES_ZIP, open_dataset


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    from csconv.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("cityscapes")
    generate_dataset(root, {"train": 5, "val": 2, "test": 2}, width=64, height=32, image_modes={1: "L"})
    return root


def make_archives(tree, folder, compression=zipfile.ZIP_DEFLATED, splits=("train", "val", "test"),
                  coarse_splits=("train", "train_extra", "val")):
    """The archives laid out as the download is: top folders plus a README and license.

    gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip for `splits`; when the tree
    holds them, gtCoarse.zip (its `coarse_splits`) and leftImg8bit_trainextra.zip.
    """
    folder.mkdir(parents=True, exist_ok=True)
    contents = [(GTFINE_ZIP, "gtFine", splits), (IMAGES_ZIP, "leftImg8bit", [s for s in splits if s != "train_extra"])]
    if (tree / "gtCoarse").is_dir():
        contents.append((GTCOARSE_ZIP, "gtCoarse", coarse_splits))
    if (tree / "leftImg8bit" / "train_extra").is_dir() and "train_extra" in coarse_splits:
        contents.append((EXTRA_IMAGES_ZIP, "leftImg8bit", ["train_extra"]))
    for archive_name, top, archived_splits in contents:
        with zipfile.ZipFile(folder / archive_name, "w", compression=compression) as archive:
            archive.writestr("README", "synthetic\n")
            archive.writestr("license.txt", "none\n")
            archive.writestr(f"__MACOSX/{top}/._junk_leftImg8bit.png", b"\x00\x05")
            for dirpath, _, filenames in sorted(os.walk(tree / top)):
                for filename in sorted(filenames):
                    path = os.path.join(dirpath, filename)
                    member = os.path.relpath(path, tree)
                    if member.split(os.sep)[1] in archived_splits:
                        archive.write(path, member)
    return folder / GTFINE_ZIP, folder / IMAGES_ZIP


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("task", [Task.PANOPTIC, Task.SEMANTIC])
def test_archives_give_the_same_samples_as_the_tree(tree, tmp_path, compression, task):
    make_archives(tree, tmp_path, compression)
    from_zip, from_tree = open_dataset(str(tmp_path)), open_dataset(str(tree))
    assert from_zip.from_archives and not from_tree.from_archives
    options = ConvertOptions(task=task)
    for split in ("train", "val", "test"):
        zipped, unpacked = discover.find_frames(from_zip, split), discover.find_frames(from_tree, split)
        assert [f.name for f in zipped] == [f.name for f in unpacked]
        for a, b in zip(zipped, unpacked):
            assert build_sample(a, options) == build_sample(b, options)


def test_archives_can_be_named_directly(tree, tmp_path):
    gtfine, images = make_archives(tree, tmp_path / "elsewhere")
    dataset = open_dataset(None, gtfine_zip=str(gtfine), images_zip=str(images))
    assert dataset.splits_present() == ["test", "train", "val"]


def test_archives_with_some_splits_hold_only_those(tree, tmp_path):
    make_archives(tree, tmp_path, splits=("val",))
    assert open_dataset(str(tmp_path)).splits_present() == ["val"]


def test_corrupt_member_is_named(tree, tmp_path):
    gtfine, _ = make_archives(tree, tmp_path, zipfile.ZIP_STORED)
    member = next(n for n in zipfile.ZipFile(gtfine).namelist() if n.endswith("_instanceIds.png") and "/train/" in n)
    info = zipfile.ZipFile(gtfine).getinfo(member)
    data = bytearray(gtfine.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF  # inside the member's data
    gtfine.write_bytes(bytes(data))
    dataset = open_dataset(str(tmp_path))
    frame = next(f for f in discover.find_frames(dataset, "train") if member.endswith(f.name + "_gtFine_instanceIds.png"))
    with pytest.raises(InputError) as error:
        build_sample(frame, ConvertOptions())
    assert error.value.path == f"{gtfine}::{member}"
    assert "corrupt archive member" in str(error.value) and "CRC" in str(error.value)


def test_truncated_archive_is_named(tree, tmp_path):
    _, images = make_archives(tree, tmp_path)
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    with pytest.raises(InputError, match=f"{images}: not a readable zip archive"):
        open_dataset(str(tmp_path))


def test_a_folder_with_neither_tree_nor_archives_names_both(tmp_path):
    with pytest.raises(CsconvError, match="missing leftImg8bit/ and gtFine/.*gtFine_trainvaltest.zip"):
        open_dataset(str(tmp_path))


def shard_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".tfrecord"}


@pytest.mark.parametrize("create_panoptic", ["true", "false"])
def test_cli_output_from_archives_is_byte_identical_to_the_tree(tree, tmp_path, create_panoptic):
    from csconv.cli import main

    make_archives(tree, tmp_path / "download", zipfile.ZIP_DEFLATED)
    common = ["--quiet", f"--create_panoptic_data={create_panoptic}", "--workers", "2"]
    assert main(["--cityscapes_root", str(tree), "--output_dir", str(tmp_path / "from-tree"), *common]) == 0
    assert main(["--cityscapes_root", str(tmp_path / "download"), "--output_dir", str(tmp_path / "from-folder"), *common]) == 0
    assert main([
        "--gtfine_zip", str(tmp_path / "download" / GTFINE_ZIP), "--images_zip", str(tmp_path / "download" / IMAGES_ZIP),
        "--output_dir", str(tmp_path / "from-zips"), *common,
    ]) == 0
    reference = shard_bytes(tmp_path / "from-tree")
    assert len(reference) == 30
    assert shard_bytes(tmp_path / "from-folder") == reference
    assert shard_bytes(tmp_path / "from-zips") == reference


def test_cli_converts_the_splits_an_archive_holds(tree, tmp_path, capsys):
    from csconv.cli import main

    make_archives(tree, tmp_path, splits=("val",))
    assert main(["--cityscapes_root", str(tmp_path), "--output_dir", str(tmp_path / "out"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tfrecord"))[0] == "val-00000-of-00010.tfrecord"
    assert len(list((tmp_path / "out").glob("*.tfrecord"))) == 10
    # Naming a split the archive lacks is an error, as for a folder.
    code = main(["--cityscapes_root", str(tmp_path), "--output_dir", str(tmp_path / "out2"), "--splits", "train"])
    assert code == 2 and "split folder missing" in capsys.readouterr().err


def test_cli_names_a_corrupt_member(tree, tmp_path, capsys):
    from csconv.cli import main

    gtfine, _ = make_archives(tree, tmp_path, zipfile.ZIP_STORED)
    member = next(n for n in zipfile.ZipFile(gtfine).namelist() if n.endswith("_polygons.json") and "/val/" in n)
    info = zipfile.ZipFile(gtfine).getinfo(member)
    data = bytearray(gtfine.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 5] ^= 0x01
    gtfine.write_bytes(bytes(data))
    code = main(["--cityscapes_root", str(tmp_path), "--output_dir", str(tmp_path / "out"), "--quiet",
                 "--create_panoptic_data=false", "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{gtfine}::{member}: corrupt archive member" in err and "Traceback" not in err


# --- archives csconv cannot read, and paths that only look like archive members -------


def _patch_central_entry(archive, member: str, offset: int, data: bytes) -> None:
    """Overwrite bytes of `member`'s central directory entry (offsets as in the zip spec)."""
    raw = bytearray(archive.read_bytes())
    name = member.encode()
    start = raw.rindex(name) - 46  # the central entry's fixed part precedes its name
    assert raw[start : start + 4] == b"PK\x01\x02"
    raw[start + offset : start + offset + len(data)] = data
    archive.write_bytes(bytes(raw))


def _first_member(archive, suffix: str, split: str = "train") -> str:
    return next(n for n in zipfile.ZipFile(archive).namelist() if n.endswith(suffix) and f"/{split}/" in n)


@pytest.mark.parametrize(
    "offset, value, needle",
    [
        (8, b"\x01\x00", "encrypted archive member"),  # general purpose flag bit 0: encrypted
        (10, b"\x09\x00", "compressed with Deflate64 (method 9)"),  # compression method 9
    ],
    ids=["encrypted", "deflate64"],
)
def test_member_python_cannot_read_is_one_line_naming_it(tree, tmp_path, capsys, offset, value, needle):
    from csconv.cli import main

    gtfine, _ = make_archives(tree, tmp_path / "download", zipfile.ZIP_STORED)
    member = _first_member(gtfine, "_instanceIds.png")
    _patch_central_entry(gtfine, member, offset, value)
    common = ["--cityscapes_root", str(tmp_path / "download"), "--quiet", "--workers", "1"]
    code = main([*common, "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "warning" not in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"csconv: error: {gtfine}::{member}: {needle}"), err
    # A per-frame problem: --keep_going leaves that frame out and converts the rest.
    code = main([*common, "--output_dir", str(tmp_path / "kept"), "--keep_going"])
    err = capsys.readouterr().err
    assert code == 1 and f"{gtfine}::{member}: {needle}" in err, err


@pytest.mark.parametrize("which", ["gtFine", "leftImg8bit"])
def test_archive_with_two_members_of_one_name_is_refused(tree, tmp_path, capsys, which):
    from csconv.cli import main

    gtfine, images = make_archives(tree, tmp_path / "download", zipfile.ZIP_DEFLATED)
    archive = gtfine if which == "gtFine" else images
    member = _first_member(archive, "_polygons.json" if which == "gtFine" else "_leftImg8bit.png")
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(archive, "a") as appended:  # what an appending archiver leaves
            appended.writestr(member, zipfile.ZipFile(archive).read(member))
    code = main(["--cityscapes_root", str(tmp_path / "download"), "--output_dir", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert f"csconv: error: {archive}::{member}: the archive holds two members of this name" in err
    assert not (tmp_path / "out").exists()


def test_root_whose_path_holds_double_colons_is_a_plain_folder(tree, tmp_path):
    from csconv.cli import main

    odd = tmp_path / "a::b" / "cityscapes"
    shutil.copytree(tree, odd)
    assert main(["--cityscapes_root", str(odd), "--output_dir", str(tmp_path / "odd-out"), "--quiet"]) == 0
    assert main(["--cityscapes_root", str(tree), "--output_dir", str(tmp_path / "plain-out"), "--quiet"]) == 0
    assert shard_bytes(tmp_path / "odd-out") == shard_bytes(tmp_path / "plain-out")


def test_archives_in_a_folder_whose_path_holds_double_colons(tree, tmp_path):
    from csconv.cli import main

    make_archives(tree, tmp_path / "x::y", zipfile.ZIP_DEFLATED)
    assert main(["--cityscapes_root", str(tmp_path / "x::y"), "--output_dir", str(tmp_path / "out"), "--quiet"]) == 0
    assert main(["--cityscapes_root", str(tree), "--output_dir", str(tmp_path / "ref"), "--quiet"]) == 0
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "ref")
