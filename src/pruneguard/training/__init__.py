"""Supervised training (clean or on poisoned data) with per-epoch checkpoints."""

from pruneguard.training.train import TrainConfig, TrainResult, train_model

__all__ = ["TrainConfig", "TrainResult", "train_model"]
