"""The bare SGD training loop: momentum, a cosine, step or constant schedule, light augmentation, a batch hook.

The one loop every trainer runs: :func:`pruneguard.training.train.train_model` adds checkpoints and resumption
around :func:`train_epoch`; :func:`fit_` runs it with neither, for code below the training layer that trains a
model of its own (an attacker's surrogate, IAB's joint training). Same config and seed, same weights.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.data.augment import augment_batch
from pruneguard.data.tensors import ArrayData, iterate_batches
from pruneguard.errors import ConfigError
from pruneguard.utils.progress import track

__all__ = ["BatchHook", "TrainConfig", "fit_", "sgd_optimizer", "train_epoch"]

logger = logging.getLogger(__name__)
_SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Training hyperparameters. ``crop_padding`` 0 and ``hflip`` False turn augmentation off."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    crop_padding: int = 2
    hflip: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"--epochs={self.epochs} must be >= 1")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size={self.batch_size} must be >= 2 (BatchNorm needs 2 samples)")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ConfigError(f"--lr={self.lr} must be a positive number")
        if self.schedule not in _SCHEDULES:
            raise ConfigError(f"--schedule={self.schedule!r} is not a schedule; accepted: {', '.join(_SCHEDULES)}")


class BatchHook(Protocol):
    """A party that rewrites every training batch and learns alongside the model (an attacker who controls the
    training, e.g. IAB's trigger generator). ``batch`` returns the inputs, their labels and an extra loss term
    (a scalar, 0 for none) added to the cross-entropy; ``zero_grad`` / ``step`` run with the model's optimizer;
    the state dict goes into the training checkpoint so a resumed run ends where an uninterrupted one would."""

    def batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...

    def zero_grad(self) -> None: ...

    def step(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _lr_at(cfg: TrainConfig, epoch: int, it: int, iters: int) -> float:
    t = (epoch + it / max(1, iters)) / cfg.epochs
    if cfg.schedule == "cosine":
        return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * t))
    if cfg.schedule == "step":  # x0.1 at 50% and again at 75% of training
        return cfg.lr * (0.1 if t >= 0.5 else 1.0) * (0.1 if t >= 0.75 else 1.0)
    return cfg.lr


def sgd_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD over ``model``'s parameters with ``config``'s momentum (Nesterov when > 0) and weight decay."""
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.momentum > 0,
    )


def train_epoch(
    model: nn.Module,
    data: ArrayData,
    config: TrainConfig,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    epoch: int,
    *,
    hook: BatchHook | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """One pass over ``data`` (order and augmentation drawn from ``gen``; the learning rate set per batch from
    ``config``'s schedule) in train mode; returns ``{"epoch", "loss", "train_accuracy"}`` of the pass.

    The device is read from the model's parameters; data batches are moved to it. ``hook`` rewrites each
    (augmented) batch and steps with the model. A batch of one image is skipped (BatchNorm needs two)."""
    device = next(model.parameters()).device
    iters = math.ceil(len(data) / config.batch_size)
    model.train()
    total, correct, loss_sum = 0, 0, 0.0
    batches = iterate_batches(data, config.batch_size, shuffle=True, generator=gen, device=device)
    for it, (x, y) in enumerate(
        track(batches, desc=f"epoch {epoch + 1}/{config.epochs}", total=iters, enabled=progress)
    ):
        if x.shape[0] < 2:
            continue
        for g in opt.param_groups:
            g["lr"] = _lr_at(config, epoch, it, iters)
        x = augment_batch(x, padding=config.crop_padding, hflip=config.hflip, generator=gen)
        extra = None
        if hook is not None:
            x, y, extra = hook.batch(x, y)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if extra is not None:
            loss = loss + extra
        opt.zero_grad(set_to_none=True)
        if hook is not None:
            hook.zero_grad()
        loss.backward()
        opt.step()
        if hook is not None:
            hook.step()
        total += y.numel()
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += float(loss.detach()) * y.numel()
    if total == 0 or not math.isfinite(loss_sum):
        raise ConfigError(f"training diverged or saw no data in epoch {epoch + 1} (loss={loss_sum})")
    logger.info("epoch %d: loss %.4f, train acc %.4f", epoch + 1, loss_sum / total, correct / total)
    return {"epoch": epoch + 1, "loss": loss_sum / total, "train_accuracy": correct / total}


def fit_(
    model: nn.Module, data: ArrayData, config: TrainConfig, *, hook: BatchHook | None = None
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``data`` for ``config.epochs`` (seeded by ``config.seed``) and leave it in eval
    mode; returns the per-epoch history. No checkpoints: the weights equal those of
    :func:`~pruneguard.training.train.train_model` with the same config, data and hook."""
    opt = sgd_optimizer(model, config)
    gen = torch.Generator().manual_seed(config.seed)
    history = [train_epoch(model, data, config, opt, gen, epoch, hook=hook) for epoch in range(config.epochs)]
    model.eval()
    return history
