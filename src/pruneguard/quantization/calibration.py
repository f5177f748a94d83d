"""Calibration: run an observed (prepared) model over the clean data to record activation ranges."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData, iterate_batches, to_float
from pruneguard.errors import ConfigError

__all__ = ["calibrate_", "calibration_example"]


def calibration_example(data: ArrayData) -> Tensor:
    """Two float inputs in [0, 1] from ``data`` (for tracing)."""
    if len(data) < 1:
        raise ConfigError("calibration data is empty; pass the defender's clean split")
    return to_float(data.x[:2]).float()


@torch.no_grad()
def calibrate_(observed: nn.Module, data: ArrayData, *, batch_size: int = 64, max_samples: int | None = 1024) -> int:
    """Forward ``data``'s first ``max_samples`` rows (in order) through ``observed``; return the count.

    The observers inside ``observed`` record activation ranges; nothing else changes.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    if max_samples is not None and max_samples < 1:
        raise ConfigError(f"max_samples={max_samples} must be None or >= 1")
    if len(data) < 1:
        raise ConfigError("calibration data is empty; pass the defender's clean split")
    if max_samples is not None and len(data) > max_samples:
        data = data.subset(torch.arange(max_samples))
    seen = 0
    for x, _ in iterate_batches(data, batch_size):
        observed(x.float())
        seen += x.shape[0]
    return seen
