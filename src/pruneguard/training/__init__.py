"""Supervised training (clean or on poisoned data) with per-epoch checkpoints."""

from pruneguard.training.train import TrainResult, train_model

__all__ = ["TrainResult", "train_model"]
