"""The files cityscapesscripts' preparation tools write, made exactly and fast (`csconv prework`).

DeepLab2, detectron2, Mask2Former, mmsegmentation and the official evaluation scripts
read a Cityscapes root that `csCreateTrainIdLabelImgs` and `csCreatePanopticImgs` have
prepared. This package writes the same files, byte for byte (instanceTrainIds: the same
pixel values), from a tree or the gtFine archive, in worker processes.

The work per frame is in core/prework.py; what is written where in plan.py; the run
(output folder, journal and manifest, workers, signals) in runner.py, records.py and
pool.py; the command line in csconv/cli/prework.py.
"""

from .runner import PreworkSummary, prework

__all__ = ["prework", "PreworkSummary"]
