"""Where the input files live: an unpacked Cityscapes tree, or the two official zip archives.

Paths inside an archive are written `<archive>::<member>`, so a frame's files are plain
strings either way and worker processes can open what they need themselves.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass

from .errors import CsconvError, InputError

ARCHIVE_SEPARATOR = "::"
IMAGE_SUFFIX = "_leftImg8bit.png"
GTFINE_ZIP = "gtFine_trainvaltest.zip"
IMAGES_ZIP = "leftImg8bit_trainvaltest.zip"


@dataclass(frozen=True)
class Dataset:
    """The input: where images and gtFine labels are, as path prefixes."""

    description: str
    images_base: str  # <root>/leftImg8bit or <archive>::leftImg8bit
    labels_base: str  # <root>/gtFine or <archive>::gtFine
    image_members: tuple[str, ...] | None = None  # archive member names, when from a zip

    @property
    def from_archives(self) -> bool:
        return self.image_members is not None

    def splits_present(self) -> list[str]:
        if self.image_members is None:
            return sorted(os.listdir(self.images_base)) if os.path.isdir(self.images_base) else []
        return sorted({member.split("/")[1] for member in self.image_members})

    def has_split(self, split: str) -> bool:
        if self.image_members is None:
            return os.path.isdir(os.path.join(self.images_base, split))
        return split in self.splits_present()

    def list_images(self, split: str) -> list[tuple[str, str, str]]:
        """(path, city, stem) of every leftImg8bit/<split>/*/*_leftImg8bit.png, sorted by path.

        Directories are listed by hand rather than globbed so that names starting
        with a dot match, as they do in TensorFlow's glob, which the reference uses.
        """
        found = []
        if self.image_members is None:
            split_dir = os.path.join(self.images_base, split)
            for city in os.listdir(split_dir):
                city_dir = os.path.join(split_dir, city)
                if os.path.isdir(city_dir):
                    for name in os.listdir(city_dir):
                        if name.endswith(IMAGE_SUFFIX):
                            found.append((os.path.join(city_dir, name), city, name[: -len(IMAGE_SUFFIX)]))
        else:
            archive = self.images_base.split(ARCHIVE_SEPARATOR)[0]
            for member in self.image_members:
                _, member_split, city, name = member.split("/")
                if member_split == split and name.endswith(IMAGE_SUFFIX):
                    path = f"{archive}{ARCHIVE_SEPARATOR}{member}"
                    found.append((path, city, name[: -len(IMAGE_SUFFIX)]))
        # Sorting the archive paths sorts as the unpacked tree's full paths would: the
        # prefix before leftImg8bit/ is the same for every file.
        found.sort()
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
        return Dataset(root, images, labels)
    zips = os.path.join(root, GTFINE_ZIP), os.path.join(root, IMAGES_ZIP)
    if not os.path.isdir(images) and not os.path.isdir(labels) and all(os.path.isfile(z) for z in zips):
        return _from_archives(*zips)
    missing = " and ".join(f"{name}/" for name, path in (("leftImg8bit", images), ("gtFine", labels))
                           if not os.path.isdir(path))
    raise CsconvError(
        f"{root}: not a Cityscapes root, missing {missing} (expected leftImg8bit/<split>/<city>/ and "
        f"gtFine/<split>/<city>/, or the archives {GTFINE_ZIP} and {IMAGES_ZIP})"
    )


def _from_archives(gtfine_zip: str, images_zip: str) -> Dataset:
    members = []
    for name in _archive(images_zip).namelist():
        parts = name.split("/")
        # Only leftImg8bit/<split>/<city>/<file>: README, license and __MACOSX/ are ignored.
        if len(parts) == 4 and parts[0] == "leftImg8bit" and parts[3].endswith(IMAGE_SUFFIX):
            members.append(name)
    _archive(gtfine_zip)  # fail now, not in a worker, if it is not a zip
    return Dataset(
        f"{images_zip} + {gtfine_zip}",
        f"{images_zip}{ARCHIVE_SEPARATOR}leftImg8bit",
        f"{gtfine_zip}{ARCHIVE_SEPARATOR}gtFine",
        tuple(members),
    )


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
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise InputError(path, f"not a readable zip archive, truncated or damaged ({error})") from None
    return _open_archives[key]


def read_file(path: str) -> bytes:
    """The bytes of a file or archive member; an InputError naming it otherwise."""
    if ARCHIVE_SEPARATOR in path:
        return _read_member(*path.split(ARCHIVE_SEPARATOR, 1))
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


def _read_member(archive_path: str, member: str) -> bytes:
    archive = _archive(archive_path)
    where = f"{archive_path}{ARCHIVE_SEPARATOR}{member}"
    try:
        return archive.read(member)
    except KeyError:
        raise InputError(where, "not in the archive") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        raise InputError(where, f"corrupt archive member ({error})") from None
