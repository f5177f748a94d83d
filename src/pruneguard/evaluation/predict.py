"""Batched inference helpers (eval mode, no grad); the device is read from the model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData, iterate_batches
from pruneguard.errors import IncompatibleModelError
from pruneguard.metrics.classification import accuracy, attack_success_rate
from pruneguard.utils.modes import eval_mode, fast_layout

__all__ = ["predict", "predict_logits", "evaluate_accuracy", "evaluate_asr", "finite_logits"]


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def finite_logits(logits: Tensor) -> Tensor:
    """``logits`` unchanged, or ``IncompatibleModelError`` when any is NaN or Inf: an arg-max over NaN is class 0,
    so a broken model would otherwise score as a working one (and as perfectly robust to every attack)."""
    bad = ~torch.isfinite(logits)
    if bool(bad.any()):
        rows = int(bad.flatten(1).any(1).sum()) if logits.dim() > 1 else int(bad.sum())
        raise IncompatibleModelError(
            f"the model's logits are NaN or Inf on {rows} of {len(logits)} inputs; its weights, buffers or "
            "normalisation are broken"
        )
    return logits


# inference batch: larger on an accelerator, where a batch of small images is far from filling the device
_BATCH = {"cpu": 512}
_ACCELERATOR_BATCH = 4096


@torch.no_grad()
def predict_logits(model: nn.Module, data: ArrayData, batch_size: int | None = None) -> Tensor:
    """Logits ``(N, classes)`` on CPU; batches of ``batch_size`` (default: 512 on the CPU, 4096 on an
    accelerator) move from the host to the model's device."""
    device = _device(model)
    batch_size = batch_size or _BATCH.get(device.type, _ACCELERATOR_BATCH)
    out = []
    with eval_mode(model), fast_layout(model):
        for x, _ in iterate_batches(data, batch_size, device=device):
            out.append(finite_logits(model(x)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def predict(model: nn.Module, data: ArrayData, batch_size: int | None = None) -> Tensor:
    """Arg-max predictions ``(N,)`` on CPU (see :func:`predict_logits`)."""
    logits = predict_logits(model, data, batch_size)
    return logits.argmax(1) if logits.numel() else torch.empty(0, dtype=torch.long)


def evaluate_accuracy(model: nn.Module, data: ArrayData, batch_size: int | None = None) -> float:
    return accuracy(predict(model, data, batch_size), data.y)


def evaluate_asr(model: nn.Module, triggered: ArrayData, target_label: int, batch_size: int | None = None) -> float:
    """ASR on a triggered set (true labels kept): share of non-target images classified as the target."""
    return attack_success_rate(predict(model, triggered, batch_size), target_label, triggered.y)
