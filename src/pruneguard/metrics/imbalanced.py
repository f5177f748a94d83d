"""Metrics of one (rare) positive class: what a fraud team reads instead of accuracy.

At 0.2% positives a model that never flags anything is 99.8% accurate, so the positive class is scored on its
own: precision, recall and F1 at the model's decision (arg-max), the area under the precision-recall curve
(average precision, the step-wise sum of scikit-learn's ``average_precision_score``), ROC-AUC (ties count
half) and recall at a fixed false-positive rate: the threshold flags at most ``fpr`` of the negatives.

Scores are the positive class's softmax probability. All functions are pure and take CPU or GPU tensors.

Example:
    >>> m = imbalanced_metrics(logits, y, positive=1, fpr=0.01)
    >>> m["pr_auc"], m["recall_at_fpr"]
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from pruneguard.errors import ConfigError

__all__ = [
    "IMBALANCE_THRESHOLD",
    "minority_share",
    "is_imbalanced",
    "positive_scores",
    "average_precision",
    "roc_auc",
    "threshold_at_fpr",
    "recall_at_threshold",
    "imbalanced_metrics",
]

IMBALANCE_THRESHOLD = 0.2


def minority_share(y: Tensor) -> float:
    """Share of the rarest class present in ``y`` (``nan`` for an empty tensor)."""
    if y.numel() == 0:
        return float("nan")
    counts = torch.bincount(y.flatten().long().cpu())
    counts = counts[counts > 0]
    return int(counts.min()) / y.numel()


def is_imbalanced(y: Tensor, threshold: float = IMBALANCE_THRESHOLD) -> bool:
    """True when the rarest class is under ``threshold`` of the rows (the positive-class metrics apply)."""
    share = minority_share(y)
    return not math.isnan(share) and share < threshold


def positive_scores(logits: Tensor, positive: int) -> Tensor:
    """The positive class's softmax probability ``(N,)`` from logits ``(N, K)``."""
    if logits.dim() != 2 or not 0 <= positive < logits.shape[1]:
        raise ConfigError(
            f"positive={positive} is not accepted for logits of shape {tuple(logits.shape)}; "
            f"accepted: a class in [0, K-1] of (N, K) logits"
        )
    return torch.softmax(logits.detach().float(), dim=1)[:, positive]


def _check(scores: Tensor, is_pos: Tensor) -> tuple[Tensor, Tensor]:
    if scores.shape != is_pos.shape or scores.dim() != 1:
        raise ConfigError(f"scores {tuple(scores.shape)} and labels {tuple(is_pos.shape)} must be two (N,) tensors")
    return scores.detach().float().cpu(), is_pos.detach().bool().cpu()


def average_precision(scores: Tensor, is_pos: Tensor) -> float:
    """Area under the precision-recall curve as ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds."""
    s, p = _check(scores, is_pos)
    n_pos = int(p.sum())
    if n_pos == 0:
        return float("nan")
    order = torch.argsort(-s, stable=True)
    s, p = s[order], p[order].float()
    tp = torch.cumsum(p, 0)
    # one point per distinct threshold: the last row of each run of equal scores
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    tp, rank = tp[last], torch.nonzero(last).flatten().float() + 1
    precision, recall = tp / rank, tp / n_pos
    prev = torch.cat([torch.zeros(1), recall[:-1]])
    return float(((recall - prev) * precision).sum())


def roc_auc(scores: Tensor, is_pos: Tensor) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    s, p = _check(scores, is_pos)
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(s, stable=True)
    sorted_s = s[order]
    ranks = torch.empty_like(s, dtype=torch.float64)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=torch.float64)
    uniq, inverse = torch.unique(sorted_s, return_inverse=True)
    sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, torch.arange(1, len(s) + 1).double())
    counts = torch.bincount(inverse, minlength=len(uniq)).double()
    ranks[order] = (sums / counts)[inverse]  # mid-ranks for ties
    u = float(ranks[p].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def threshold_at_fpr(scores: Tensor, is_pos: Tensor, fpr: float) -> float:
    """The score a row must exceed to be flagged so that at most ``fpr`` of the negatives are flagged."""
    if not 0.0 <= fpr < 1.0:
        raise ConfigError(f"fpr={fpr} is outside [0, 1); it is the share of negatives flagged")
    s, p = _check(scores, is_pos)
    neg = torch.sort(s[~p], descending=True).values
    allowed = math.floor(fpr * len(neg) + 1e-9)
    return float(neg[allowed]) if allowed < len(neg) else float("-inf")


def recall_at_threshold(scores: Tensor, is_pos: Tensor, threshold: float) -> float:
    """Share of positives scoring above ``threshold`` (``nan`` without positives)."""
    s, p = _check(scores, is_pos)
    n_pos = int(p.sum())
    return int((s[p] > threshold).sum()) / n_pos if n_pos else float("nan")


def imbalanced_metrics(logits: Tensor, y: Tensor, positive: int, *, fpr: float = 0.01) -> dict[str, Any]:
    """The positive class's scores on ``(logits (N, K), y (N,))``.

    Returns ``{positive, n, n_positive, precision, recall, f1`` (at the arg-max decision), ``pr_auc, roc_auc,
    fpr, threshold_at_fpr, recall_at_fpr}``; a value is ``nan`` where it is undefined (no positives, no
    flagged rows).
    """
    scores = positive_scores(logits, positive)
    is_pos = y.detach().cpu() == positive
    flagged = logits.detach().argmax(1).cpu() == positive
    tp = int((flagged & is_pos).sum())
    n_flag, n_pos = int(flagged.sum()), int(is_pos.sum())
    precision = tp / n_flag if n_flag else float("nan")
    recall = tp / n_pos if n_pos else float("nan")
    f1 = 2 * tp / (n_flag + n_pos) if n_flag + n_pos else float("nan")
    thr = threshold_at_fpr(scores, is_pos, fpr)
    return {
        "positive": positive,
        "n": int(y.numel()),
        "n_positive": n_pos,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pr_auc": average_precision(scores, is_pos),
        "roc_auc": roc_auc(scores, is_pos),
        "fpr": fpr,
        "threshold_at_fpr": thr,
        "recall_at_fpr": recall_at_threshold(scores, is_pos, thr),
    }
