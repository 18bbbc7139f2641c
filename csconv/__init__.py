"""csconv: Cityscapes to DeepLab2 TFRecords (and other formats), in one command or from Python.

    import csconv
    csconv.convert("/data/cityscapes", "/data/tfrecords")        # the command line's run
    for sample in csconv.samples("/data/cityscapes", "val"): ...  # frames, nothing written
    dataset = csconv.read("/data/tfrecords", "train")             # random access, any sink

See README, "Python API".
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["convert", "samples", "read", "CsconvError", "SplitSizeWarning", "Sample", "OutputSplit", "RunSummary", "__version__"]

if TYPE_CHECKING:
    from .api import OutputSplit, RunSummary, convert, read, samples
    from .core.errors import CsconvError
    from .core.records import Sample
    from .pipeline.convert import SplitSizeWarning

# Where each public name lives. They load on first use: `csconv --version`, and every
# process that imports a csconv module, would otherwise pay a quarter of a second for
# the whole pipeline's imports.
_PUBLIC = {
    "convert": ".api", "samples": ".api", "read": ".api", "OutputSplit": ".api", "RunSummary": ".api",
    "CsconvError": ".core.errors", "Sample": ".core.records", "SplitSizeWarning": ".pipeline.convert",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
