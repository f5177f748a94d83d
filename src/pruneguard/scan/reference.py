"""A reference model trained on the clean split alone: what reaching a class costs without any backdoor.

Used by :func:`pruneguard.scan.suspect.reference_suspect` to break a tie between the scans' voices: the suspect
model's reversed trigger to a class is judged against the reference's trigger to the same class, so that a class
every model of the data reaches easily (bags on Fashion-MNIST) is not taken for an implanted target.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.models.fit import TrainConfig
from pruneguard.scan.reversal import TRIGGER_KINDS, ReversalConfig, reverse_trigger
from pruneguard.training.train import train_model

__all__ = ["REFERENCE_TRAIN", "reference_trigger_sizes", "train_reference"]

# 30 epochs on the 600-image 1% split of Fashion-MNIST: about 40 s on one core, 83% test accuracy for small_cnn
REFERENCE_TRAIN = TrainConfig(epochs=30, batch_size=64, lr=0.05, crop_padding=1, hflip=True)


def train_reference(
    build: Callable[[], nn.Module], clean: ArrayData, *, seed: int, device: torch.device | str = "cpu"
) -> nn.Module:
    """A fresh model from ``build`` trained on ``clean`` (``REFERENCE_TRAIN``, seeded; crop and flip only for
    images), on ``device``, in eval mode."""
    images = clean.x.dim() == 4
    cfg = replace(
        REFERENCE_TRAIN,
        crop_padding=REFERENCE_TRAIN.crop_padding if images else 0,
        hflip=REFERENCE_TRAIN.hflip and images,
        seed=seed,
    )
    model = build().to(device)
    train_model(model, clean, cfg)
    return model.eval()


def reference_trigger_sizes(
    reference: nn.Module,
    clean: ArrayData,
    candidates: Sequence[int],
    config: ReversalConfig,
    *,
    kinds: Sequence[str] = TRIGGER_KINDS,
    seed: int = 0,
) -> dict[str, Any]:
    """The reference's reversed trigger size (mask L1) per kind for each candidate class, reversed as
    :func:`~pruneguard.scan.reversal.reversal_scan` reverses the suspect's (same config and seed), and the
    seconds taken."""
    t0 = time.perf_counter()
    sizes = {
        kind: {
            int(c): reverse_trigger(
                reference, clean, int(c), config, generator=torch.Generator().manual_seed(seed), kind=kind
            ).mask_l1
            for c in candidates
        }
        for kind in kinds
    }
    return {"sizes": sizes, "seconds": time.perf_counter() - t0}
