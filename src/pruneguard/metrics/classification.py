"""Classification metrics on predictions or logits."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["accuracy", "attack_success_rate"]


def _preds(logits_or_preds: Tensor) -> Tensor:
    return logits_or_preds.argmax(dim=1) if logits_or_preds.dim() == 2 else logits_or_preds


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Share of rows whose arg-max (or given prediction) equals ``y``; ``nan`` for an empty batch."""
    if y.numel() == 0:
        return float("nan")
    return int((_preds(logits) == y).sum()) / y.numel()


def attack_success_rate(preds: Tensor, target: Tensor | int, y_true: Tensor | None = None) -> float:
    """Share of triggered inputs classified as the attacker's ``target``.

    Following the ANP paper, inputs whose true class already is the target do not count: pass ``y_true`` to drop
    them here, or drop them beforehand (``triggered_eval_set`` does).
    """
    p = _preds(preds)
    t = torch.as_tensor(target, device=p.device).expand_as(p)
    if y_true is not None:
        keep = y_true != t
        p, t = p[keep], t[keep]
    if p.numel() == 0:
        return float("nan")
    return int((p == t).sum()) / p.numel()
