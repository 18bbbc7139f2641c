"""Cityscapes-panoptic ground truth in the benchmark server's format.

This is `csconv prework --make panoptic` with another layout: the output is what
`csCreatePanopticImgs` (without `--use-train-id`) writes for the same input, per split
`cityscapes_panoptic_<split>.json` plus a folder `cityscapes_panoptic_<split>/` of
`<name>_gtFine_panoptic.png` files (categories by original Cityscapes label id), but
straight in --output_dir instead of inside gtFine/. See core/panoptic_gt.py for what
the files hold.
"""

from __future__ import annotations

from ..core.png import check_compress_level
from ..core.prework import Kind
from ..prework import prework


def eval_gt(
    cityscapes_root: str,
    output_dir: str,
    splits: list[str] | None = None,
    workers: int = 1,
    compress_level: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    storage_options: dict | None = None,
) -> dict[str, int]:
    """Panoptic ground truth for the given splits (default: every split holding instanceIds);
    frames per split. compress_level None: Pillow's default save, csCreatePanopticImgs's bytes.
    Either folder may be a URL (gs://, s3://, memory://, ...); storage_options go to fsspec."""
    check_compress_level(compress_level)
    summary = prework(
        cityscapes_root, output_dir, (Kind.PANOPTIC,), splits, workers, overwrite, resume, compress_level,
        panoptic_only_layout=True, storage_options=storage_options,
    )
    return {split: counts[Kind.PANOPTIC.value] for split, counts in summary.counts.items()}
