"""csconv: Cityscapes to DeepLab2 TFRecords (and other formats), in one command or from Python.

    import csconv
    csconv.convert("/data/cityscapes", "/data/tfrecords")        # the command line's run
    for sample in csconv.samples("/data/cityscapes", "val"): ...  # frames, nothing written
    dataset = csconv.read("/data/tfrecords", "train")             # random access, any sink

See README, "Python API".
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["convert", "samples", "read", "CsconvError", "Sample", "OutputSplit", "RunSummary", "__version__"]

if TYPE_CHECKING:
    from .api import OutputSplit, RunSummary, convert, read, samples
    from .core.errors import CsconvError
    from .core.records import Sample

# Where each public name lives. They load on first use: `csconv --version`, and every
# process that imports a csconv module, would otherwise pay a quarter of a second for
# the whole pipeline's imports.
_PUBLIC = {
    "convert": ".api", "samples": ".api", "read": ".api", "OutputSplit": ".api", "RunSummary": ".api",
    "CsconvError": ".core.errors", "Sample": ".core.records",
}


class _Package(types.ModuleType):
    @property
    def convert(self):
        return import_module(".api", __name__).convert

    @convert.setter
    def convert(self, submodule):
        # Importing the pipeline module csconv/convert.py sets the package attribute of
        # its name; `csconv.convert` stays the function (the module is still importable
        # as `from csconv.convert import ...`).
        pass

    def __getattr__(self, name: str):
        if name in _PUBLIC:
            return getattr(import_module(_PUBLIC[name], __name__), name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_PUBLIC))


sys.modules[__name__].__class__ = _Package
