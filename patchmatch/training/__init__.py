"""Training of the patch-comparison models: losses, pair-consistent augmentation, the loop."""

from .augment import augment_pairs, dihedral
from .data import PairData, PairSetError, load_eval_pairs, load_pair_data
from .losses import contrastive_loss, hinge_loss
from .loop import TrainConfig, TrainingStateError, TrainResult, evaluate_pairs, state_path, train

__all__ = [
    "augment_pairs",
    "dihedral",
    "PairData",
    "PairSetError",
    "load_eval_pairs",
    "load_pair_data",
    "contrastive_loss",
    "hinge_loss",
    "TrainConfig",
    "TrainingStateError",
    "TrainResult",
    "evaluate_pairs",
    "state_path",
    "train",
]
