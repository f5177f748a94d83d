"""Small pieces the training loops of FT-SAM, SAU and I-BAU share: schedule, pruned entries, batch draws."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor, nn

from pruneguard.defenses.fine_tune import zero_masks

__all__ = ["cosine_lr", "device_of", "log_progress", "pruned_entries", "set_lr_", "zero_pruned_grads_", "zero_pruned_"]


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def cosine_lr(base: float, step: int, total: int) -> float:
    """The cosine-annealed learning rate at ``step`` of ``total`` (``base`` at 0, 0 at ``total``)."""
    return 0.5 * base * (1.0 + math.cos(math.pi * step / max(1, total)))


def set_lr_(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def pruned_entries(model: nn.Module, keep: bool) -> dict[nn.Parameter, Tensor]:
    """The exactly-zero (pruned) weight entries per parameter, to be held at zero (empty when not ``keep``)."""
    if not keep:
        return {}
    params = dict(model.named_parameters())
    return {params[name]: mask for name, mask in zero_masks(model).items()}


def zero_pruned_grads_(pruned: dict[nn.Parameter, Tensor]) -> None:
    """No gradient (hence no momentum or Adam state) for pruned entries."""
    for p, mask in pruned.items():
        if p.grad is not None:
            p.grad[mask] = 0.0


@torch.no_grad()
def zero_pruned_(pruned: dict[nn.Parameter, Tensor]) -> None:
    """Pruned entries back to exactly zero (weight decay of 0 is 0, but Adam's epsilon path is not exact)."""
    for p, mask in pruned.items():
        p[mask] = 0.0


def log_progress(logger: logging.Logger, what: str, done: int, total: int, row: dict[str, Any]) -> None:
    """Log ``row`` (the figures of step ``done`` of ``total``) every tenth step and at the last: ten lines a run."""
    if done % 10 == 0 or done == total:
        logger.info("%s %d/%d: %s", what, done, total, {k: round(float(v), 4) for k, v in row.items()})
