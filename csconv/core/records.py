"""Typed records passed from the core to the sinks."""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import Enum

import numpy as np

from .errors import CsconvError
from .png import check_compress_level, inspect
from .sources import FINE, Location, annotation_set

# The largest divisor whose ignore id, 255 * divisor, is still an int32.
MAX_LABEL_DIVISOR = (2**31 - 1) // 255


class Task(str, Enum):
    PANOPTIC = "panoptic"
    SEMANTIC = "semantic"


class Source(str, Enum):
    RAW = "raw"  # straight from the official download
    PREPARED = "prepared"  # from cityscapesscripts' prework outputs
    LABEL_IDS = "labelids"  # semantic only: remap the shipped labelIds (not reference-exact)


@dataclass(frozen=True)
class ConvertOptions:
    task: Task = Task.PANOPTIC
    source: Source = Source.RAW
    treat_crowd_as_ignore: bool = True
    label_divisor: int = 1000
    # None: Pillow's default save, the bytes the reference stores; 0-9 trades them for speed.
    png_compress_level: int | None = None
    annotations: str = FINE.name  # which labels: "fine" (gtFine) or "coarse" (gtCoarse)

    def __post_init__(self):
        if self.source is Source.LABEL_IDS and self.task is Task.PANOPTIC:
            raise CsconvError("--source labelids only applies to semantic labels (--create_panoptic_data=false)")
        if annotation_set(self.annotations) is not FINE and self.task is Task.PANOPTIC:
            raise CsconvError(
                f"--annotations {self.annotations} makes semantic labels only (--create_panoptic_data=false): "
                "panoptic labels come from gtFine alone, as cityscapesscripts' csCreatePanopticImgs makes them"
            )
        check_compress_level(self.png_compress_level)
        # Checked before any work: 255 * divisor (the ignore label) must fit the int32 map.
        if not 1 <= self.label_divisor <= MAX_LABEL_DIVISOR:
            raise CsconvError(
                f"--label_divisor must be between 1 and {MAX_LABEL_DIVISOR:,} "
                f"(255 x divisor must fit in int32), got {self.label_divisor:,}"
            )


@dataclass(frozen=True)
class Frame:
    """One leftImg8bit image found on disk, with where its labels would be."""

    labels_base: Location  # <root>/gtFine (gtCoarse), or that folder inside its archive (see core.sources)
    split: str
    city: str
    name: str  # <city>_<seq>_<frame>, DeepLab2's image/filename
    image_path: Location
    labels_folder: str = "gtFine"  # gtCoarse for coarse annotations: also the file names' infix

    def label_path(self, suffix: str) -> Location:
        """<labels_base>/<split>/<city>/<name>_gtFine_<suffix> (_gtCoarse_ for coarse annotations)."""
        return self.labels_base.join(self.split, self.city, f"{self.name}_{self.labels_folder}_{suffix}")


@dataclass(frozen=True, eq=False)
class Sample:
    """One converted frame: what every sink stores.

    ``label`` is an int32 HxW array for the panoptic task, PNG bytes for the semantic
    task, and None on the test split.
    """

    split: str
    filename: str
    image: bytes
    image_format: str
    height: int
    width: int
    channels: int
    label: np.ndarray | bytes | None
    label_format: str | None

    def label_bytes(self) -> bytes | memoryview | None:
        """The label as DeepLab2 stores it: raw little-endian int32 or PNG bytes."""
        if self.label is None or isinstance(self.label, bytes):
            return self.label
        array = np.ascontiguousarray(self.label, dtype="<i4")
        return memoryview(array).cast("B")

    def image_array(self) -> np.ndarray:
        """The image decoded: H x W x 3 uint8, RGB. A PNG whose header claims more pixels
        than --max_pixels (png.set_max_pixels) is an InputError, before anything is inflated."""
        from PIL import Image

        inspect(self.image, f"{self.filename}: image")
        with Image.open(io.BytesIO(self.image)) as image:
            return np.asarray(image.convert("RGB"))

    def label_array(self) -> np.ndarray | None:
        """The label decoded: H x W int32 panoptic ids (raw), or uint8 trainIds (PNG,
        255 = ignore); None on the test split, whose records carry no label."""
        if self.label is None:
            return None
        if self.label_format == "raw":
            return np.asarray(self.label, dtype="<i4")
        from PIL import Image

        inspect(self.label, f"{self.filename}: label")
        with Image.open(io.BytesIO(self.label)) as image:
            array = np.asarray(image)
        if array.ndim != 2 or array.dtype != np.uint8:
            raise ValueError(f"{self.filename}: label PNG is {array.dtype} {array.shape}, expected 8-bit grayscale")
        return array

    def semantic_and_instance(self, label_divisor: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """A panoptic label split into (semantic trainIds uint8, instance ids int32), each H x W.

        Panoptic ids are semantic * label_divisor + instance. The divisor is not stored in
        the record: 1000 is DeepLab2's and csconv's default; pass the one the output was
        converted with (csconv.read(...).label_divisor gives it from the manifest).
        """
        label = self.label_array()
        if label is None or self.label_format != "raw":
            kind = "no label" if label is None else "a semantic label, which holds no instances"
            raise ValueError(f"{self.filename}: {kind}; only panoptic labels split into semantic and instance")
        semantic, instance = np.divmod(label, label_divisor)
        if semantic.size and (semantic.min() < 0 or semantic.max() > 255):
            raise ValueError(
                f"{self.filename}: panoptic ids divided by {label_divisor} leave classes outside 0-255; "
                "was the output converted with another label divisor?"
            )
        return semantic.astype(np.uint8), instance.astype(np.int32)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sample):
            return NotImplemented
        fields = ("split", "filename", "image", "image_format", "height", "width", "channels", "label_format")
        if any(getattr(self, f) != getattr(other, f) for f in fields):
            return False
        if isinstance(self.label, np.ndarray) or isinstance(other.label, np.ndarray):
            return (
                isinstance(self.label, np.ndarray)
                and isinstance(other.label, np.ndarray)
                and self.label.shape == other.label.shape
                and self.label.dtype == other.label.dtype
                and bool(np.array_equal(self.label, other.label))
            )
        return self.label == other.label
