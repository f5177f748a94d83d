"""The metadata of a tiny untrained digits model, as ``pruneguard train`` writes it (with held-out indices)."""

from __future__ import annotations

import torch

from pruneguard.data import dataset_info, holdout_split, load_dataset
from pruneguard.data.splits import indices_hash
from pruneguard.models.io import ModelMeta


def digits_meta(width: float = 0.25) -> ModelMeta:
    """``small_cnn`` at ``width`` for digits, its held-out 10% drawn with seed 0."""
    info, y = dataset_info("digits"), load_dataset("digits", "train").y
    _, held = holdout_split(y, 0.1, generator=torch.Generator().manual_seed(0))
    return ModelMeta(
        arch="small_cnn",
        num_classes=10,
        input_shape=info.input_shape,
        mean=info.mean,
        std=info.std,
        kwargs={"width": width},
        dataset="digits",
        holdout_indices=held.tolist(),
        holdout_hash=indices_hash(held),
    )
