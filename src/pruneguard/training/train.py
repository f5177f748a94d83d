"""Resumable training: :func:`~pruneguard.models.fit.train_epoch` with a checkpoint after every epoch."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.models.fit import BatchHook, TrainConfig, sgd_optimizer, train_epoch
from pruneguard.utils.io import atomic_write

__all__ = ["TrainResult", "train_model"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


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
    ``hook`` rewrites each (augmented) batch and is trained with the model (see
    :class:`~pruneguard.models.fit.BatchHook`); a checkpoint written with a hook only resumes a run with one, and
    the other way round.
    """
    opt = sgd_optimizer(model, config)
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
    end = config.epochs if stop_after is None else min(config.epochs, stop_after)
    for epoch in range(start_epoch, end):
        result.history.append(train_epoch(model, data, config, opt, gen, epoch, hook=hook, progress=progress))
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
