"""Poisoning a dataset: pick a rate of the eligible images, stamp the trigger, relabel (or not)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.errors import ConfigError

__all__ = ["PoisonedData", "poison_dataset", "to_storage", "triggered_eval_set"]


@dataclass(frozen=True)
class PoisonedData:
    """Poisoned training data and which rows were poisoned (indices into ``data``)."""

    data: ArrayData
    poison_indices: Tensor
    target_label: int


def to_storage(x_float: Tensor, like: Tensor) -> Tensor:
    """Convert float images in [0, 1] back to the storage dtype of ``like`` (uint8 rounds)."""
    if like.dtype == torch.uint8:
        return (x_float.clamp(0, 1) * 255.0).round_().to(torch.uint8)
    return x_float.to(like.dtype)


def poison_dataset(
    data: ArrayData,
    stamp: Callable[[Tensor, Tensor], Tensor],
    *,
    rate: float,
    target_label: int,
    relabel: bool = True,
    only_target_class: bool = False,
    generator: torch.Generator | None = None,
    batch_size: int = 4096,
) -> PoisonedData:
    """Poison ``rate`` of the eligible images of ``data``.

    Dirty-label attacks (``relabel=True``) draw from images whose label is *not* the target and relabel them to
    ``target_label`` (as the ANP reference code). Clean-label attacks (``only_target_class=True``,
    ``relabel=False``) draw from target-class images and keep their labels.
    ``stamp(x_float, y) -> x_float`` applies the trigger to a float batch.
    """
    if not 0.0 < rate <= 1.0:
        raise ConfigError(f"poison rate={rate} is outside (0, 1]")
    if not 0 <= target_label < data.num_classes:
        raise ConfigError(f"target_label={target_label} is outside [0, {data.num_classes - 1}]")
    eligible = torch.nonzero((data.y == target_label) if only_target_class else (data.y != target_label)).flatten()
    count = int(rate * eligible.numel())
    if count == 0:
        raise ConfigError(f"poison rate={rate} selects no image out of {eligible.numel()} eligible ones")
    chosen = eligible[torch.randperm(eligible.numel(), generator=generator)[:count]].sort().values
    x, y = data.x.clone(), data.y.clone()
    for start in range(0, count, batch_size):
        idx = chosen[start : start + batch_size]
        x[idx] = to_storage(stamp(to_float(x[idx]), y[idx]), x)
    if relabel:
        y[chosen] = target_label
    return PoisonedData(ArrayData(x, y, data.num_classes, f"{data.name}+poison", data.classes), chosen, target_label)


def triggered_eval_set(
    data: ArrayData, stamp: Callable[[Tensor, Tensor], Tensor], target_label: int, batch_size: int = 4096
) -> ArrayData:
    """Test images whose true class is not the target, with the trigger stamped; labels stay the true ones."""
    keep = torch.nonzero(data.y != target_label).flatten()
    sub = data.subset(keep, name=f"{data.name}+trigger")
    x = sub.x.clone()
    for start in range(0, len(sub), batch_size):
        sl = slice(start, start + batch_size)
        x[sl] = to_storage(stamp(to_float(x[sl]), sub.y[sl]), x)
    return ArrayData(x, sub.y, sub.num_classes, sub.name, sub.classes)
