"""FT: the fine-tuning baseline defence (fine-tune a copy of the suspect model on the defender's clean split)."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from pruneguard.data.tensors import ArrayData, iterate_batches
from pruneguard.defenses.fine_tune import fine_tune_, zero_masks
from pruneguard.errors import ConfigError
from pruneguard.models.fit import TrainConfig
from pruneguard.utils.modes import eval_mode

__all__ = ["finetune_defense", "clean_train_config", "clean_accuracy"]


def clean_train_config(
    clean: ArrayData, *, epochs: int, lr: float, batch_size: int, augment: bool, seed: int
) -> TrainConfig:
    """The fine-tuning recipe of the baseline defences: SGD (momentum 0.9, weight decay 5e-4), cosine ``lr``.

    Images get ``pruneguard train``'s light augmentation when ``augment`` (random crop with ``W // 14`` pixels
    of padding, at least 1, and horizontal flips); other inputs none. Raises ``ConfigError`` on bad values.
    """
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ConfigError(f"epochs={epochs!r} is not accepted; accepted: an integer >= 1")
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr={lr!r} is not accepted; accepted: a positive number")
    if not (isinstance(batch_size, int) and batch_size >= 2):
        raise ConfigError(f"batch_size={batch_size!r} is not accepted; accepted: an integer >= 2")
    if len(clean) < 2:
        raise ConfigError(f"the clean split has {len(clean)} samples; accepted: at least 2")
    image = clean.x.dim() == 4
    return TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        crop_padding=max(1, clean.x.shape[-1] // 14) if image and augment else 0,
        hflip=image and augment,
        seed=seed,
    )


@torch.no_grad()
def clean_accuracy(model: nn.Module, data: ArrayData, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``data`` in eval mode (flags restored); the device is the model's."""
    device = next(model.parameters()).device
    correct = 0
    with eval_mode(model):
        for x, y in iterate_batches(data, batch_size, device=device):
            correct += int((model(x).argmax(1) == y).sum())
    return correct / max(1, len(data))


def finetune_defense(
    model: nn.Module,
    clean: ArrayData,
    *,
    epochs: int = 10,
    lr: float = 0.01,
    batch_size: int = 128,
    augment: bool = True,
    keep_pruned: bool = True,
    seed: int = 0,
) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-tune a copy of ``model`` on the defender's clean split; ``model`` itself is never modified.

    The FT baseline of the ANP paper (https://arxiv.org/abs/2110.14430, Table 1): the hope is that plain
    training on clean data overwrites the backdoor. Threat model: the defender holds a small clean split and
    the suspect model. With ``keep_pruned``, weights that are exactly zero (pruned) stay zero. Deterministic
    for a fixed ``seed`` (batch order and augmentation).

    Returns:
        The fine-tuned copy (eval mode) and ``{"method": "ft", "epochs", "lr", "clean_samples", "history"}``.

    Example:
        >>> defended, info = finetune_defense(model, clean, epochs=10, lr=0.01)
    """
    cfg = clean_train_config(clean, epochs=epochs, lr=lr, batch_size=batch_size, augment=augment, seed=seed)
    defended = copy.deepcopy(model)
    result = fine_tune_(defended, clean, cfg, keep_zero=zero_masks(defended) if keep_pruned else None)
    defended.eval()
    info = {"method": "ft", "epochs": epochs, "lr": lr, "clean_samples": len(clean), "history": result.history}
    return defended, info
