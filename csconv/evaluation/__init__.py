"""The Cityscapes benchmark server's formats: ground_truth.py writes its panoptic ground
truth, predictions.py turns a model's predictions into what it accepts."""
