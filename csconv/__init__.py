"""csconv: Cityscapes to DeepLab2 TFRecords (and other formats), in one command."""

__version__ = "0.1.0"
