"""Where the input files live: an unpacked Cityscapes tree, or the two official zip archives.

Every input file is a `Location`: a path, or an archive path and a member name carried
as separate values. Messages show a member as `<archive>::<member>`, but nothing is
ever parsed back from that text, so a folder whose name holds `::` is just a folder.
Locations pickle, so worker processes open what they need themselves.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass

from .errors import CsconvError, InputError

ARCHIVE_SEPARATOR = "::"  # display only: how a member is named in messages
IMAGE_SUFFIX = "_leftImg8bit.png"
GTFINE_ZIP = "gtFine_trainvaltest.zip"
IMAGES_ZIP = "leftImg8bit_trainvaltest.zip"


@dataclass(frozen=True)
class Location:
    """An input file or folder: `path` on disk, or `member` inside the zip archive at `path`."""

    path: str
    member: str | None = None

    @property
    def in_archive(self) -> bool:
        return self.member is not None

    def join(self, *parts: str) -> "Location":
        if self.member is None:
            return Location(os.path.join(self.path, *parts))
        return Location(self.path, "/".join((self.member, *parts)))

    def __str__(self) -> str:
        return self.path if self.member is None else f"{self.path}{ARCHIVE_SEPARATOR}{self.member}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


@dataclass(frozen=True)
class Dataset:
    """The input: where images and gtFine labels are, as path prefixes."""

    description: str
    images_base: Location  # <root>/leftImg8bit, or member leftImg8bit of the images archive
    labels_base: Location  # <root>/gtFine, or member gtFine of the gtFine archive
    image_members: tuple[str, ...] | None = None  # archive member names, when from a zip

    @property
    def from_archives(self) -> bool:
        return self.image_members is not None

    def splits_present(self) -> list[str]:
        if self.image_members is None:
            base = self.images_base.path
            return sorted(os.listdir(base)) if os.path.isdir(base) else []
        return sorted({member.split("/")[1] for member in self.image_members})

    def has_split(self, split: str) -> bool:
        if self.image_members is None:
            return os.path.isdir(os.path.join(self.images_base.path, split))
        return split in self.splits_present()

    def list_images(self, split: str) -> list[tuple[Location, str, str]]:
        """(path, city, stem) of every leftImg8bit/<split>/*/*_leftImg8bit.png, sorted by path.

        Directories are listed by hand rather than globbed so that names starting
        with a dot match, as they do in TensorFlow's glob, which the reference uses.
        """
        found = []
        if self.image_members is None:
            split_dir = os.path.join(self.images_base.path, split)
            for city in os.listdir(split_dir):
                city_dir = os.path.join(split_dir, city)
                if os.path.isdir(city_dir):
                    for name in os.listdir(city_dir):
                        if name.endswith(IMAGE_SUFFIX):
                            found.append((Location(os.path.join(city_dir, name)), city, name[: -len(IMAGE_SUFFIX)]))
            found.sort(key=lambda item: item[0].path)
        else:
            archive = self.images_base.path
            for member in self.image_members:
                _, member_split, city, name = member.split("/")
                if member_split == split and name.endswith(IMAGE_SUFFIX):
                    found.append((Location(archive, member), city, name[: -len(IMAGE_SUFFIX)]))
            # Member names sort as the unpacked tree's full paths would: the prefix
            # before leftImg8bit/ is the same for every file.
            found.sort(key=lambda item: item[0].member)
        return found


def open_dataset(root: str | None, gtfine_zip: str | None = None, images_zip: str | None = None) -> Dataset:
    if gtfine_zip or images_zip:
        if not (gtfine_zip and images_zip):
            raise CsconvError("--gtfine_zip and --images_zip go together: give both archives")
        return _from_archives(gtfine_zip, images_zip)
    if root is None:
        raise CsconvError("give --cityscapes_root, or --gtfine_zip and --images_zip")
    if not os.path.isdir(root):
        raise CsconvError(f"{root}: Cityscapes root does not exist or is not a folder")
    images, labels = os.path.join(root, "leftImg8bit"), os.path.join(root, "gtFine")
    if os.path.isdir(images) and os.path.isdir(labels):
        return Dataset(root, Location(images), Location(labels))
    zips = os.path.join(root, GTFINE_ZIP), os.path.join(root, IMAGES_ZIP)
    if not os.path.isdir(images) and not os.path.isdir(labels) and all(os.path.isfile(z) for z in zips):
        return _from_archives(*zips)
    missing = " and ".join(f"{name}/" for name, path in (("leftImg8bit", images), ("gtFine", labels))
                           if not os.path.isdir(path))
    raise CsconvError(
        f"{root}: not a Cityscapes root, missing {missing} (expected leftImg8bit/<split>/<city>/ and "
        f"gtFine/<split>/<city>/, or the archives {GTFINE_ZIP} and {IMAGES_ZIP})"
    )


@dataclass(frozen=True)
class GtFine:
    """The gtFine annotations alone, as the cityscapesscripts prework reads them: a folder,
    or the gtFine archive's members (`members`, under `base.member`)."""

    base: Location  # <root>/gtFine, or member gtFine of gtFine_trainvaltest.zip
    members: tuple[str, ...] | None = None

    def has_split(self, split: str) -> bool:
        if self.members is None:
            return os.path.isdir(os.path.join(self.base.path, split))
        return any(member.split("/")[1] == split for member in self.members)

    def files(self, split: str) -> list[tuple[Location, str, str]]:
        """(location, city, file name) of every file in gtFine/<split>/<city>/, sorted by path.

        As Python's glob lists them, which cityscapesscripts uses: names starting with a
        dot are left out.
        """
        found = []
        if self.members is None:
            split_dir = os.path.join(self.base.path, split)
            for city in os.listdir(split_dir) if os.path.isdir(split_dir) else ():
                city_dir = os.path.join(split_dir, city)
                if not city.startswith(".") and os.path.isdir(city_dir):
                    found += [(Location(os.path.join(city_dir, name)), city, name)
                              for name in os.listdir(city_dir) if not name.startswith(".")]
            found.sort(key=lambda item: item[0].path)
        else:
            for member in self.members:
                _, member_split, city, name = member.split("/")
                if member_split == split:
                    found.append((Location(self.base.path, member), city, name))
            found.sort(key=lambda item: item[0].member)
        return found


def open_gtfine(root: str) -> GtFine:
    """gtFine/ in `root`, or else the gtFine_trainvaltest.zip there."""
    if not os.path.isdir(root):
        raise CsconvError(f"{root}: Cityscapes root does not exist or is not a folder")
    folder = os.path.join(root, "gtFine")
    if os.path.isdir(folder):
        return GtFine(Location(folder))
    archive = os.path.join(root, GTFINE_ZIP)
    if os.path.isfile(archive):
        members = []
        for name in _member_names(archive):
            parts = name.split("/")
            # gtFine/<split>/<city>/<file> only: README, license, __MACOSX/ and folders are not annotations.
            if len(parts) == 4 and parts[0] == "gtFine" and parts[3] and not any(p.startswith(".") for p in parts[1:]):
                members.append(name)
        return GtFine(Location(archive, "gtFine"), tuple(members))
    raise InputError(root, f"no gtFine/ folder and no {GTFINE_ZIP}; is this a Cityscapes root?")


def _from_archives(gtfine_zip: str, images_zip: str) -> Dataset:
    members = []
    for name in _member_names(images_zip):
        parts = name.split("/")
        # Only leftImg8bit/<split>/<city>/<file>: README, license and __MACOSX/ are ignored.
        if len(parts) == 4 and parts[0] == "leftImg8bit" and parts[3].endswith(IMAGE_SUFFIX):
            members.append(name)
    _member_names(gtfine_zip)  # fail now, not in a worker, if it is not a usable zip
    return Dataset(
        f"{images_zip} + {gtfine_zip}",
        Location(images_zip, "leftImg8bit"),
        Location(gtfine_zip, "gtFine"),
        tuple(members),
    )


def _member_names(archive_path: str) -> list[str]:
    """The archive's member names; an InputError when one appears twice.

    Appending archivers leave two members of one name; reading by name would give
    one of them, and listing would convert that frame twice.
    """
    names = _archive(archive_path).namelist()
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(
                str(Location(archive_path, name)),
                "the archive holds two members of this name (left by an appending archiver?); "
                "re-create the archive with one copy",
            )
        seen.add(name)
    return names


# One open handle per archive and process: a handle inherited across fork shares its
# file offset with the parent, so it is never reused in a child.
_open_archives: dict[tuple[int, str], zipfile.ZipFile] = {}


def _archive(path: str) -> zipfile.ZipFile:
    key = (os.getpid(), path)
    if key not in _open_archives:
        try:
            _open_archives[key] = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise InputError(path, "archive not found") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            raise InputError(path, f"not a readable zip archive, truncated or damaged ({error})") from None
        except NotImplementedError as error:  # a member needing a newer zip version than zipfile knows
            raise InputError(path, f"a zip archive Python's zipfile cannot read ({error})") from None
    return _open_archives[key]


def read_file(location: Location | str) -> bytes:
    """The bytes of a file or archive member; an InputError naming it otherwise."""
    if isinstance(location, Location):
        if location.member is not None:
            return _read_member(location.path, location.member)
        location = location.path
    path = location
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(path, "dangling symbolic link") from None
        raise InputError(path, "file not found") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, expected a file") from None
    except OSError as error:
        raise InputError(path, f"cannot read ({error.strerror})") from None


# The most a member may declare it inflates to, by kind, refused before reading: a zip
# member can expand a thousandfold. Real Cityscapes PNGs are at most about 3 MB, polygons
# JSONs 300 KB; the prepared panoptic JSON of a split is tens of MB, hence the wide rest.
MAX_MEMBER_BYTES = {".png": 64 * 2**20, "_polygons.json": 32 * 2**20}
MAX_OTHER_MEMBER_BYTES = 1024 * 2**20


def member_limit(member: str) -> int:
    return next((limit for suffix, limit in MAX_MEMBER_BYTES.items() if member.endswith(suffix)),
                MAX_OTHER_MEMBER_BYTES)


def _read_member(archive_path: str, member: str) -> bytes:
    archive = _archive(archive_path)
    where = str(Location(archive_path, member))
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise InputError(where, "not in the archive") from None
    limit = member_limit(member)
    if info.file_size > limit:
        raise InputError(
            where, f"archive member declares {info.file_size:,} bytes uncompressed, more than the {limit:,} "
            f"a file of its kind may have (a decompression bomb?)",
        )
    # zipfile stops inflating at the declared size and then finds the CRC wrong, so a
    # member that inflates beyond what it declares ends as BadZipFile below.
    try:
        return archive.read(info)
    except NotImplementedError:
        name = _COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise InputError(
            where, f"compressed with {name}, which Python's zipfile cannot read; re-pack the archive with Deflate"
        ) from None
    except RuntimeError as error:  # after NotImplementedError, its subclass: zipfile's way of saying "encrypted"
        raise InputError(where, f"encrypted archive member, which csconv cannot read ({error})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        raise InputError(where, f"corrupt archive member ({error})") from None


# Zip compression methods Python cannot decompress, by the number the archive records.
_COMPRESSION_NAMES = {9: "Deflate64 (method 9)", 6: "Implode (method 6)", 1: "Shrink (method 1)", 98: "PPMd (method 98)"}
