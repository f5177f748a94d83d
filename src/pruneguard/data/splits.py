"""The defender's data: a held-out part of the training split and a small stratified clean set drawn from it.

The ANP paper trains on 90% of the training data and defends with a small part of the other 10%.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from pruneguard.errors import ConfigError

__all__ = ["stratified_sample", "holdout_split", "clean_split", "validation_split", "indices_hash"]


def stratified_sample(y: Tensor, count: int, *, generator: torch.Generator | None = None) -> Tensor:
    """``count`` indices into ``y`` with class proportions kept (largest remainders), sorted."""
    n = int(y.numel())
    if not 0 < count <= n:
        raise ConfigError(f"sample size {count} is outside [1, {n}]")
    classes, counts = torch.unique(y, return_counts=True)
    quota = counts.double() * count / n
    take = quota.floor().long()
    rest = count - int(take.sum())
    if rest:
        order = torch.argsort(quota - take.double(), descending=True, stable=True)
        take[order[:rest]] += 1
    picked = []
    for c, k in zip(classes.tolist(), take.tolist(), strict=True):
        idx = torch.nonzero(y == c).flatten()
        perm = torch.randperm(idx.numel(), generator=generator)
        picked.append(idx[perm[:k]])
    return torch.sort(torch.cat(picked)).values


def holdout_split(
    y: Tensor, holdout_fraction: float = 0.1, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Split training indices into (model-training, held-out) parts, stratified."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction={holdout_fraction} is outside (0, 1)")
    held = stratified_sample(y, max(1, int(round(holdout_fraction * y.numel()))), generator=generator)
    keep = torch.ones(y.numel(), dtype=torch.bool)
    keep[held] = False
    return torch.nonzero(keep).flatten(), held


def validation_split(y: Tensor, fraction: float, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Positions into ``y`` split into (used, validation): a stratified ``fraction`` held out for validation.

    With the 1% clean split of Fashion-MNIST (600 images) and 0.2, validation holds 120 images, 12 per class: one
    image is 0.83 points, and the binomial standard error of an accuracy near 90% is about 2.7 points.
    """
    n = int(y.numel())
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation_fraction={fraction} is outside (0, 1)")
    count = min(n - 1, max(1, int(round(fraction * n))))
    if n < 2:
        raise ConfigError(f"{n} clean sample(s) cannot be split into a used and a validation part; need at least 2")
    val = stratified_sample(y, count, generator=generator)
    keep = torch.ones(n, dtype=torch.bool)
    keep[val] = False
    return torch.nonzero(keep).flatten(), val


def clean_split(
    y: Tensor,
    pool: Tensor,
    *,
    clean_fraction: float | None = 0.01,
    clean_samples: int | None = None,
    total: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw the defender's clean set from ``pool`` (indices into ``y``), stratified and seeded.

    ``clean_fraction`` is relative to ``total`` (the size of the full training split, as in the paper: 1% of
    CIFAR-10 = 500 images); ``clean_samples`` gives the count directly and wins when both are given.
    """
    total = int(y.numel()) if total is None else total
    if clean_samples is not None:
        if clean_samples < 2:
            raise ConfigError(f"--clean-samples={clean_samples} must be at least 2")
        count = clean_samples
    else:
        if clean_fraction is None or not 0.0 < clean_fraction <= 1.0:
            raise ConfigError(f"--clean-fraction={clean_fraction} is outside (0, 1]; e.g. 0.01 for 1%")
        count = max(2, int(round(clean_fraction * total)))
    if count > pool.numel():
        raise ConfigError(
            f"the clean split asks for {count} samples but only {pool.numel()} held-out samples exist; "
            "lower --clean-fraction/--clean-samples"
        )
    sub = stratified_sample(y[pool], count, generator=generator)
    return pool[sub]


def indices_hash(indices: Tensor) -> str:
    """SHA-256 of a sorted index list (int64 little-endian): a short, stable record of a data split."""
    arr = torch.sort(indices.detach().flatten().long().cpu()).values.numpy().astype("<i8")
    return hashlib.sha256(arr.tobytes()).hexdigest()
