"""Training layer: Lightning glue, datasets, checkpoint export (above the plain-PyTorch core)."""

from dforce.training.data import RandomWindows, SequenceDataset
from dforce.training.export import build_model, export_model, load_model, model_spec
from dforce.training.lightning import DiffusionForcingModule, TrainConfig, train

__all__ = [
    "DiffusionForcingModule", "RandomWindows", "SequenceDataset", "TrainConfig", "build_model", "export_model",
    "load_model", "model_spec", "train",
]
