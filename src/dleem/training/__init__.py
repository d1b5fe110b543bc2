"""Training: aligned crops from the pairs, losses, and the trainer (`dleem train`)."""

from dleem.training.data import PairData, load_pairs, sample_batch, validation_tiles
from dleem.training.trainer import TrainOptions, TrainResult, train

__all__ = ["PairData", "TrainOptions", "TrainResult", "load_pairs", "sample_batch", "train",
           "validation_tiles"]
