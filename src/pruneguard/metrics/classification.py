"""Classification metrics on predictions or logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["accuracy", "attack_success_rate", "class_kept", "mean_kl", "paired_change"]


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


def paired_change(before: Tensor, after: Tensor, y: Tensor) -> dict[str, float | int]:
    """How a change of model moved its predictions on the same labelled images (logits or predictions ``before``
    and ``after``, labels ``y``): ``images``; ``changed``, the images whose prediction differs; ``lost`` (right
    before, wrong after) and ``gained``; the accuracy ``drop`` and its standard error ``drop_se``, from the
    per-image differences (-1, 0, 1) as a paired sample: sqrt((lost + gained)/n - drop^2) / sqrt(n). Only the
    images whose prediction changed carry information about the drop, so a drop measured on few images with many
    changes is uncertain even when it reads 0."""
    pb, pa = _preds(before), _preds(after)
    if not pb.shape == pa.shape == y.shape:
        raise ValueError(f"predictions of shape {tuple(pb.shape)} and {tuple(pa.shape)} for labels {tuple(y.shape)}")
    n = y.numel()
    if n == 0:
        raise ValueError("paired_change needs at least one image")
    right_before, right_after = pb == y, pa == y
    lost = int((right_before & ~right_after).sum())
    gained = int((~right_before & right_after).sum())
    drop = (lost - gained) / n
    var = max((lost + gained) / n - drop * drop, 0.0)
    return {
        "images": n,
        "changed": int((pb != pa).sum()),
        "lost": lost,
        "gained": gained,
        "drop": drop,
        "drop_se": (var / n) ** 0.5,
    }


def class_kept(before: Tensor, after: Tensor, cls: int) -> float | None:
    """Of the images ``before`` (logits or predictions) assigns to class ``cls``, the share ``after`` still assigns
    to it; None when ``before`` assigns none. A repair that removes a backdoor's shortcut to ``cls`` leaves the
    clean images of ``cls`` where they were; one that unlearns the class itself (a clean model, or the wrong class
    suspected) takes them away, and on a few hundred images that shows far more clearly than the accuracy does."""
    pb, pa = _preds(before), _preds(after)
    if pb.shape != pa.shape:
        raise ValueError(f"predictions of shape {tuple(pb.shape)} and {tuple(pa.shape)}; accepted: the same images")
    was = pb == cls
    if not bool(was.any()):
        return None
    return int((pa[was] == cls).sum()) / int(was.sum())
