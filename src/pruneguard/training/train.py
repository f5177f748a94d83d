"""SGD training with momentum, a cosine or step schedule, light augmentation and resumable checkpoints."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.data.augment import augment_batch
from pruneguard.data.tensors import ArrayData, iterate_batches
from pruneguard.errors import ConfigError
from pruneguard.utils.io import atomic_write
from pruneguard.utils.progress import track

__all__ = ["BatchHook", "TrainConfig", "TrainResult", "train_model"]

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


@dataclass
class TrainResult:
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _lr_at(cfg: TrainConfig, epoch: int, it: int, iters: int) -> float:
    t = (epoch + it / max(1, iters)) / cfg.epochs
    if cfg.schedule == "cosine":
        return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * t))
    if cfg.schedule == "step":  # x0.1 at 50% and again at 75% of training
        return cfg.lr * (0.1 if t >= 0.5 else 1.0) * (0.1 if t >= 0.75 else 1.0)
    return cfg.lr


def train_model(
    model: nn.Module,
    data: ArrayData,
    config: TrainConfig,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = False,
    stop_after: int | None = None,
    hook: BatchHook | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data``; write ``checkpoint`` after every epoch and resume from it if present.

    The device is read from the model's parameters; data batches are moved to it. ``stop_after`` ends after that
    many epochs in total (to test resumption); a resumed run ends bit-identical to an uninterrupted one on CPU.
    ``hook`` rewrites each (augmented) batch and is trained with the model (see :class:`BatchHook`); a checkpoint
    written with a hook only resumes a run with one, and the other way round.
    """
    device = next(model.parameters()).device
    opt = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.momentum > 0,
    )
    gen = torch.Generator().manual_seed(config.seed)
    result, start_epoch = TrainResult(0), 0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if state.get("config") == asdict(config) and ("hook" in state) == (hook is not None):
            model.load_state_dict(state["model"])
            if hook is not None:
                hook.load_state_dict(state["hook"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            start_epoch, result.history = int(state["epoch"]), list(state["history"])
            logger.info("resuming training at epoch %d from %s", start_epoch, ckpt)
    t0 = time.perf_counter()
    iters = math.ceil(len(data) / config.batch_size)
    end = config.epochs if stop_after is None else min(config.epochs, stop_after)
    for epoch in range(start_epoch, end):
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
        result.history.append({"epoch": epoch + 1, "loss": loss_sum / total, "train_accuracy": correct / total})
        logger.info("epoch %d: loss %.4f, train acc %.4f", epoch + 1, loss_sum / total, correct / total)
        if ckpt is not None:
            state = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "generator": gen.get_state(),
                "epoch": epoch + 1,
                "history": result.history,
                "config": asdict(config),
            }
            if hook is not None:
                state["hook"] = hook.state_dict()
            with atomic_write(ckpt, "wb") as fh:
                torch.save(state, fh)
    model.eval()
    result.epochs_run = config.epochs
    result.seconds = time.perf_counter() - t0
    return result
