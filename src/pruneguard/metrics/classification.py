"""Classification metrics on predictions or logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["accuracy", "attack_success_rate", "mean_kl"]


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


def mean_kl(reference: Tensor, logits: Tensor) -> float:
    """Mean over rows of ``KL(softmax(reference) ‖ softmax(logits))`` in nats: how far a changed model's predictive
    distribution moved from a reference model's on the same inputs. Continuous, so on a few hundred images it
    sees damage that the accuracy (steps of one image) misses; 0 for identical outputs."""
    if reference.shape != logits.shape or reference.dim() != 2:
        raise ValueError(f"logits of shape {tuple(logits.shape)}; accepted: the reference's {tuple(reference.shape)}")
    if reference.shape[0] == 0:
        return float("nan")
    ref = F.log_softmax(reference.float(), 1)
    return float((ref.exp() * (ref - F.log_softmax(logits.float(), 1))).sum(1).mean().clamp_min(0.0))
