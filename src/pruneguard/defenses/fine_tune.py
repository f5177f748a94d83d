"""Fine-tuning on the defender's clean split, keeping pruned weights at exactly zero."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData
from pruneguard.models.fit import BatchHook, TrainConfig
from pruneguard.training.train import TrainResult, train_model

__all__ = ["fine_tune_", "zero_masks"]


def zero_masks(model: nn.Module) -> dict[str, Tensor]:
    """Boolean masks of the weight entries that are exactly zero (pruned), per parameter name."""
    return {n: p.detach() == 0 for n, p in model.named_parameters() if n.endswith("weight") and bool((p == 0).any())}


def fine_tune_(
    model: nn.Module,
    data: ArrayData,
    config: TrainConfig,
    *,
    keep_zero: dict[str, Tensor] | None = None,
    hook: BatchHook | None = None,
) -> TrainResult:
    """Fine-tune ``model`` in place; entries marked in ``keep_zero`` get no gradient and stay zero; ``hook`` as in
    :func:`~pruneguard.training.train.train_model` (e.g. a distillation term).

    With weight decay the pruned entries stay zero too: their gradient and momentum are zero and decay of 0 is 0.
    """
    params = dict(model.named_parameters())
    handles = []
    for name, mask in (keep_zero or {}).items():
        keep = (~mask).to(params[name].dtype)
        handles.append(params[name].register_hook(lambda g, k=keep: g * k))
    try:
        cfg = replace(config, batch_size=min(config.batch_size, max(2, len(data))))
        return train_model(model, data, cfg, hook=hook)
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for name, mask in (keep_zero or {}).items():
                params[name][mask] = 0.0
