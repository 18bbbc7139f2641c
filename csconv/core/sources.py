"""Where the input files live: an unpacked Cityscapes tree, or the official zip archives.

The labels are gtFine (fine annotations) or gtCoarse (coarse ones), each a folder or
its archive; the images are leftImg8bit, a folder or the archives holding it
(leftImg8bit_trainvaltest.zip, and leftImg8bit_trainextra.zip for the coarse-only
train_extra split).

Every input file is a `Location`: a path, or an archive path and a member name carried
as separate values. Messages show a member as `<archive>::<member>`, but nothing is
ever parsed back from that text, so a folder whose name holds `::` is just a folder.
Locations pickle, so worker processes open what they need themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import storage
from ..storage import zipfs
from .errors import CsconvError, InputError

ARCHIVE_SEPARATOR = zipfs.SEPARATOR  # display only: how a member is named in messages
IMAGE_SUFFIX = "_leftImg8bit.png"
GTFINE_ZIP = "gtFine_trainvaltest.zip"
IMAGES_ZIP = "leftImg8bit_trainvaltest.zip"
GTCOARSE_ZIP = "gtCoarse.zip"
EXTRA_IMAGES_ZIP = "leftImg8bit_trainextra.zip"


@dataclass(frozen=True)
class AnnotationSet:
    """One kind of Cityscapes annotation as the download ships it."""

    name: str  # what --annotations takes
    folder: str  # the top folder, also the infix of its file names (<stem>_<folder>_polygons.json)
    archive: str  # the official archive holding <folder>/<split>/...
    splits: tuple[str, ...]  # the splits it holds, in the order they are converted by default


FINE = AnnotationSet("fine", "gtFine", GTFINE_ZIP, ("train", "val", "test"))
COARSE = AnnotationSet("coarse", "gtCoarse", GTCOARSE_ZIP, ("train", "val", "train_extra"))
ANNOTATION_SETS = {annotations.name: annotations for annotations in (FINE, COARSE)}


def annotation_set(name: "str | AnnotationSet") -> AnnotationSet:
    if isinstance(name, AnnotationSet):
        return name
    found = ANNOTATION_SETS.get(name)
    if found is None:
        raise CsconvError(f"annotations must be {' or '.join(ANNOTATION_SETS)}, got {name!r}")
    return found


def parse_annotation_sets(text: str) -> tuple[AnnotationSet, ...]:
    """An --annotations value (`fine`, `coarse` or `fine,coarse`), each set once."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ANNOTATION_SETS]
    if unknown or not names:
        raise CsconvError(f"--annotations takes a comma-separated list of {', '.join(ANNOTATION_SETS)}, got {text!r}")
    return tuple(ANNOTATION_SETS[name] for name in dict.fromkeys(names))


@dataclass(frozen=True)
class Location:
    """An input file or folder: `path` on disk or a URL, or `member` inside the zip archive at `path`."""

    path: str
    member: str | None = None

    @property
    def in_archive(self) -> bool:
        return self.member is not None

    def join(self, *parts: str) -> "Location":
        if self.member is None:
            return Location(storage.join(self.path, *parts))
        return Location(self.path, "/".join((self.member, *parts)))

    def __str__(self) -> str:
        return self.path if self.member is None else f"{self.path}{ARCHIVE_SEPARATOR}{self.member}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


@dataclass(frozen=True)
class Dataset:
    """The input: where images and labels are, as path prefixes."""

    description: str
    images_base: Location  # <root>/leftImg8bit, or member leftImg8bit of the images archive
    labels_base: Location  # <root>/gtFine (gtCoarse), or that member of its archive
    # The images when from archives: (archive, its leftImg8bit/<split>/<city>/ member names)
    # per archive; no member name is in two of them.
    image_archives: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    annotations: AnnotationSet = FINE

    @property
    def from_archives(self) -> bool:
        return self.image_archives is not None

    def splits_present(self) -> list[str]:
        if self.image_archives is None:
            base = self.images_base.path
            return storage.list_names(base) if storage.is_dir(base) else []
        return sorted({member.split("/")[1] for _, members in self.image_archives for member in members})

    def has_split(self, split: str) -> bool:
        if self.image_archives is None:
            return storage.is_dir(storage.join(self.images_base.path, split))
        return split in self.splits_present()

    def images_dir(self, split: str) -> Location:
        """leftImg8bit/<split>, in the archive holding the split's images (for messages)."""
        for archive, members in self.image_archives or ():
            if any(member.split("/")[1] == split for member in members):
                return Location(archive, f"leftImg8bit/{split}")
        return self.images_base.join(split)

    def list_images(self, split: str) -> list[tuple[Location, str, str]]:
        """(path, city, stem) of every leftImg8bit/<split>/*/*_leftImg8bit.png, sorted by path.

        Directories are listed by hand rather than globbed so that names starting
        with a dot match, as they do in TensorFlow's glob, which the reference uses.
        """
        found = []
        if self.image_archives is None:
            for path, city, name in storage.files_by_city(storage.join(self.images_base.path, split)):
                if name.endswith(IMAGE_SUFFIX):
                    found.append((Location(path), city, name[: -len(IMAGE_SUFFIX)]))
            found.sort(key=lambda item: item[0].path)
        else:
            for archive, members in self.image_archives:
                for member in members:
                    _, member_split, city, name = member.split("/")
                    if member_split == split and name.endswith(IMAGE_SUFFIX):
                        found.append((Location(archive, member), city, name[: -len(IMAGE_SUFFIX)]))
            # Member names sort as the unpacked tree's full paths would: the prefix
            # before leftImg8bit/ is the same for every file.
            found.sort(key=lambda item: item[0].member)
        return found


def open_dataset(
    root: str | None, gtfine_zip: str | None = None, images_zip: str | None = None,
    annotations: str | AnnotationSet = FINE, gtcoarse_zip: str | None = None, extra_images_zip: str | None = None,
) -> Dataset:
    """The input of a conversion: a tree, a folder holding the official archives, or the
    archives named (fine: gtfine_zip and images_zip; coarse: gtcoarse_zip with images_zip
    and/or extra_images_zip)."""
    annotations = annotation_set(annotations)
    if annotations is FINE:
        if gtcoarse_zip or extra_images_zip:
            raise CsconvError("--gtcoarse_zip and --extra_images_zip are the coarse annotations' archives: "
                              "give them with --annotations coarse")
        if gtfine_zip or images_zip:
            if not (gtfine_zip and images_zip):
                raise CsconvError("--gtfine_zip and --images_zip go together: give both archives")
            return _from_archives(gtfine_zip, (images_zip,), FINE)
    elif gtfine_zip:
        raise CsconvError("--gtfine_zip is the fine annotations' archive: give --gtcoarse_zip for coarse annotations")
    elif gtcoarse_zip or images_zip or extra_images_zip:
        if not (gtcoarse_zip and (images_zip or extra_images_zip)):
            raise CsconvError("--gtcoarse_zip goes with --images_zip and/or --extra_images_zip: give the annotations "
                              "and the images of the splits to convert")
        return _from_archives(gtcoarse_zip, tuple(z for z in (images_zip, extra_images_zip) if z), annotations)
    if root is None:
        archives = "--gtfine_zip and --images_zip" if annotations is FINE else \
            "--gtcoarse_zip with --images_zip and/or --extra_images_zip"
        raise CsconvError(f"give --cityscapes_root, or {archives}")
    if not storage.is_dir(root):
        raise CsconvError(f"{root}: Cityscapes root does not exist or is not a folder")
    folder = annotations.folder
    images, labels = storage.join(root, "leftImg8bit"), storage.join(root, folder)
    images_there, labels_there = storage.is_dir(images), storage.is_dir(labels)
    if images_there and labels_there:
        return Dataset(root, Location(images), Location(labels), annotations=annotations)
    labels_zip = storage.join(root, annotations.archive)
    # Coarse annotations come with two image archives; either may be left out.
    image_zips = [storage.join(root, name) for name in _image_archives(annotations)]
    image_zips = [path for path in image_zips if storage.is_file(path)]
    if not images_there and not labels_there and storage.is_file(labels_zip) and image_zips:
        return _from_archives(labels_zip, tuple(image_zips), annotations)
    missing = " and ".join(f"{name}/" for name, there in (("leftImg8bit", images_there), (folder, labels_there))
                           if not there)
    archives = " and ".join((annotations.archive, " or ".join(_image_archives(annotations))))
    raise CsconvError(
        f"{root}: not a Cityscapes root, missing {missing} (expected leftImg8bit/<split>/<city>/ and "
        f"{folder}/<split>/<city>/, or the archives {archives})"
    )


def _image_archives(annotations: AnnotationSet) -> tuple[str, ...]:
    return (IMAGES_ZIP, EXTRA_IMAGES_ZIP) if annotations is COARSE else (IMAGES_ZIP,)


@dataclass(frozen=True)
class GtFine:
    """One set of annotations alone (gtFine, or gtCoarse despite the name), as the
    cityscapesscripts prework reads them: a folder, or the archive's members (`members`,
    under `base.member`)."""

    base: Location  # <root>/gtFine, or member gtFine of gtFine_trainvaltest.zip (gtCoarse: alike)
    members: tuple[str, ...] | None = None
    annotations: AnnotationSet = FINE

    def has_split(self, split: str) -> bool:
        if self.members is None:
            return storage.is_dir(storage.join(self.base.path, split))
        return any(member.split("/")[1] == split for member in self.members)

    def splits(self) -> list[str]:
        """The split folders it holds, sorted (names starting with a dot left out, as by glob)."""
        if self.members is None:
            base = self.base.path
            return sorted(name for name in storage.list_names(base)
                          if not name.startswith(".") and storage.is_dir(storage.join(base, name)))
        return sorted({member.split("/")[1] for member in self.members})

    def files(self, split: str) -> list[tuple[Location, str, str]]:
        """(location, city, file name) of every file in gtFine/<split>/<city>/, sorted by path.

        As Python's glob lists them, which cityscapesscripts uses: names starting with a
        dot are left out.
        """
        found = []
        if self.members is None:
            for path, city, name in storage.files_by_city(storage.join(self.base.path, split)):
                if not city.startswith(".") and not name.startswith("."):
                    found.append((Location(path), city, name))
            found.sort(key=lambda item: item[0].path)
        else:
            for member in self.members:
                _, member_split, city, name = member.split("/")
                if member_split == split:
                    found.append((Location(self.base.path, member), city, name))
            found.sort(key=lambda item: item[0].member)
        return found


def open_gtfine(root: str, annotations: str | AnnotationSet = FINE) -> GtFine:
    """gtFine/ (gtCoarse/) in `root`, or else its official archive there; `root` may be a URL."""
    annotations = annotation_set(annotations)
    if not storage.is_dir(root):
        raise CsconvError(f"{root}: Cityscapes root does not exist or is not a folder")
    top = annotations.folder
    folder = storage.join(root, top)
    if storage.is_dir(folder):
        return GtFine(Location(folder), annotations=annotations)
    archive = storage.join(root, annotations.archive)
    if storage.is_file(archive):
        return GtFine(Location(archive, top), _annotation_members(archive, top), annotations)
    raise InputError(root, f"no {top}/ folder and no {annotations.archive}; is this a Cityscapes root?")


def _annotation_members(archive: str, top: str) -> tuple[str, ...]:
    members = []
    for name in zipfs.member_names(archive):
        parts = name.split("/")
        # <top>/<split>/<city>/<file> only: README, license, __MACOSX/ and folders are not annotations.
        if len(parts) == 4 and parts[0] == top and parts[3] and not any(p.startswith(".") for p in parts[1:]):
            members.append(name)
    return tuple(members)


def _from_archives(labels_zip: str, images_zips: tuple[str, ...], annotations: AnnotationSet) -> Dataset:
    image_archives, seen = [], {}
    for images_zip in images_zips:
        members = []
        for name in zipfs.member_names(images_zip):
            parts = name.split("/")
            # Only leftImg8bit/<split>/<city>/<file>: README, license and __MACOSX/ are ignored.
            if len(parts) == 4 and parts[0] == "leftImg8bit" and parts[3].endswith(IMAGE_SUFFIX):
                if name in seen:  # the frame would be converted twice
                    raise InputError(str(Location(images_zip, name)), f"this image is in {seen[name]} too")
                seen[name] = images_zip
                members.append(name)
        image_archives.append((images_zip, tuple(members)))
    zipfs.member_names(labels_zip)  # fail now, not in a worker, if it is not a usable zip
    return Dataset(
        " + ".join((*images_zips, labels_zip)),
        Location(images_zips[0], "leftImg8bit"),
        Location(labels_zip, annotations.folder),
        tuple(image_archives),
        annotations,
    )


def read_file(location: Location | str) -> bytes:
    """The bytes of a file, archive member or object; an InputError naming it otherwise."""
    if isinstance(location, Location):
        if location.member is not None:
            return zipfs.read_member(location.path, location.member)
        location = location.path
    return storage.read_input(location)
