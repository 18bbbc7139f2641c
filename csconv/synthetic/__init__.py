"""Deterministic synthetic Cityscapes data for tests and benchmarks."""

from csconv.synthetic.generator import DEFAULT_CITIES, generate_dataset
from csconv.synthetic.raster import rasterize_polygon, render_labels

__all__ = ["DEFAULT_CITIES", "generate_dataset", "rasterize_polygon", "render_labels"]
