"""Choosing which ANP neurons to prune, and the pruning curve (neurons pruned -> metrics)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from pruneguard.errors import ConfigError
from pruneguard.pruning.neurons import NeuronGroup, prune_neurons_

__all__ = [
    "prune_order",
    "select_by_threshold",
    "select_smallest",
    "curve_counts",
    "pruning_curve",
    "auto_count",
    "divergence_count",
]


def prune_order(masks: Tensor, tiebreak: Tensor | None = None) -> Tensor:
    """Neuron indices sorted by mask value, smallest first; equal masks by ``tiebreak`` (smallest first, e.g.
    :attr:`~pruneguard.pruning.anp.ANPResult.mask_mean`), then in layer order."""
    if tiebreak is None:
        return torch.argsort(masks, stable=True)
    if tiebreak.shape != masks.shape:
        raise ValueError(f"tiebreak has shape {tuple(tiebreak.shape)}; accepted: the masks' {tuple(masks.shape)}")
    by_tie = torch.argsort(tiebreak, stable=True)
    return by_tie[torch.argsort(masks[by_tie], stable=True)]


def select_by_threshold(masks: Tensor, threshold: float, tiebreak: Tensor | None = None) -> Tensor:
    """Neurons whose mask is ``<= threshold`` (the reference's rule), in pruning order."""
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold={threshold} is outside [0, 1]; accepted: a mask value in [0, 1]")
    order = prune_order(masks, tiebreak)
    return order[masks[order] <= threshold]


def select_smallest(masks: Tensor, count: int, tiebreak: Tensor | None = None) -> Tensor:
    """The ``count`` neurons first in pruning order (the smallest masks)."""
    if not 0 <= count <= masks.numel():
        raise ConfigError(f"count={count} is outside [0, {masks.numel()}] (the number of neurons)")
    return prune_order(masks, tiebreak)[:count]


def curve_counts(masks: Tensor, *, max_fraction: float = 0.9, max_points: int = 120) -> list[int]:
    """Counts of pruned neurons at which the curve is evaluated: every count for small models, else a grid that
    also contains each 0.05-step threshold's count."""
    n = masks.numel()
    top = int(round(max_fraction * n))
    if top + 1 <= max_points:
        return list(range(top + 1))
    grid = set(torch.linspace(0, top, max_points - 20).round().long().tolist())
    sorted_masks = torch.sort(masks).values
    for t in torch.arange(0.0, 0.951, 0.05):
        grid.add(min(top, int(torch.searchsorted(sorted_masks, t, right=True))))
    return sorted(grid)


@torch.no_grad()
def pruning_curve(
    model: nn.Module,
    groups: list[NeuronGroup],
    masks: Tensor,
    evaluators: dict[str, Callable[[nn.Module], float]],
    counts: Sequence[int],
    *,
    stop_drop: float | None = None,
    tiebreak: Tensor | None = None,
) -> list[dict[str, float]]:
    """Prune neurons in pruning order (:func:`prune_order`) on a copy of ``model`` and evaluate at each count in
    ``counts``.

    With ``stop_drop``, the curve ends at the first count whose first evaluator (clean accuracy) has fallen more
    than ``stop_drop`` below the unpruned model's: past a collapse the points cost time and say nothing new.
    """
    work = copy.deepcopy(model)
    order = prune_order(masks, tiebreak)
    rows: list[dict[str, float]] = []
    done = 0
    first = next(iter(evaluators), None)
    for k in sorted(set(int(c) for c in counts)):
        if k > done:
            prune_neurons_(work, groups, order[done:k])
            done = k
        row: dict[str, float] = {"pruned": k, "threshold": float(masks[order[k - 1]]) if k else 0.0}
        for name, fn in evaluators.items():
            row[name] = fn(work)
        rows.append(row)
        if stop_drop is not None and first is not None and rows[0][first] - row[first] > stop_drop:
            break
    return rows


def _last_before(curve: list[dict[str, float]], exceeds: Callable[[dict[str, float]], bool]) -> int:
    """The largest count of ``curve`` such that no row up to it ``exceeds`` (0 when the first row does)."""
    if not curve or curve[0]["pruned"] != 0:
        raise ValueError("the pruning curve must start at 0 pruned neurons")
    best = 0
    for row in curve:
        if exceeds(row):
            break
        best = int(row["pruned"])
    return best


def auto_count(curve: list[dict[str, float]], max_acc_drop: float, key: str = "clean_accuracy") -> int:
    """The largest count whose clean-split accuracy, and that of every smaller count, stays within
    ``max_acc_drop`` of the unpruned model. Uses only the defender's clean data."""
    if not 0.0 <= max_acc_drop < 1.0:
        raise ConfigError(f"max_acc_drop={max_acc_drop} is not accepted; accepted: a number in [0, 1)")
    base = curve[0][key] if curve else 0.0
    return _last_before(curve, lambda row: base - row[key] > max_acc_drop + 1e-12)


def divergence_count(curve: list[dict[str, float]], max_kl: float, key: str = "kl") -> int:
    """The largest count whose divergence from the unpruned model's outputs (``key``, e.g.
    :func:`~pruneguard.metrics.mean_kl` on the validation data), and that of every smaller count, is at most
    ``max_kl``."""
    if not max_kl >= 0.0:
        raise ConfigError(f"max_kl={max_kl} is not accepted; accepted: a number >= 0")
    return _last_before(curve, lambda row: row[key] > max_kl + 1e-12)
