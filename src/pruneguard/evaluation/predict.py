"""Batched inference helpers (eval mode, no grad); the device is read from the model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData, iterate_batches
from pruneguard.metrics.classification import accuracy, attack_success_rate
from pruneguard.utils.modes import eval_mode

__all__ = ["predict", "evaluate_accuracy", "evaluate_asr"]


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def predict(model: nn.Module, data: ArrayData, batch_size: int = 512) -> Tensor:
    """Arg-max predictions ``(N,)`` on CPU."""
    device = _device(model)
    out = []
    with eval_mode(model):
        for x, _ in iterate_batches(data, batch_size, device=device):
            out.append(model(x).argmax(1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def evaluate_accuracy(model: nn.Module, data: ArrayData, batch_size: int = 512) -> float:
    return accuracy(predict(model, data, batch_size), data.y)


def evaluate_asr(model: nn.Module, triggered: ArrayData, target_label: int, batch_size: int = 512) -> float:
    """ASR on a triggered set (true labels kept): share of non-target images classified as the target."""
    return attack_success_rate(predict(model, triggered, batch_size), target_label, triggered.y)
