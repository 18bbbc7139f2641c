"""Every command: the module under csconv.cli that implements it, and its line in `csconv --help`.

Listing the commands imports none of them; a command's module is imported only when it
runs. Each module offers add_parser(subparsers) and run(args) -> exit status.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

# In the order `csconv --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("convert", "convert a Cityscapes root (the default command)"),
    "sinks": ("sinks", "list the registered sinks and the plugin providing each"),
    "demo": ("demo", "make a small synthetic Cityscapes set, convert it with every sink, read it back"),
    "verify": ("verify", "check an output folder against its manifest, record by record"),
    "synth": ("synth", "generate a deterministic synthetic Cityscapes tree"),
    "prework": (
        "prework",
        "write what cityscapesscripts' prework writes (labelTrainIds, panoptic JSON + PNGs), exactly and fast",
    ),
    "eval-gt": (
        "eval_gt", "write Cityscapes-panoptic ground truth for the evaluation server (COCO panoptic PNG + JSON)"
    ),
    "to-evalid": ("to_evalid", "convert trainId predictions into the label ids the Cityscapes evaluation expects"),
    "preview": ("preview", "draw one converted frame: image, coloured label, instance outlines, legend"),
    "stats": ("stats", "per-class pixel shares and instance counts of a converted output"),
}
DEFAULT_COMMAND = "convert"


def summary(command: str) -> str:
    return COMMANDS[command][1]


def command_module(command: str) -> ModuleType:
    return import_module(f"{__package__}.{COMMANDS[command][0]}")
