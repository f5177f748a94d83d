"""A faint pattern: a low-amplitude blend of a smooth random pattern over the whole image.

A trigger family of the evaluation zoo (no published attack uses it): unlike Blend's per-pixel noise at
alpha 0.2, the pattern is coarse random noise (``grain`` x ``grain`` cells, bilinearly upsampled) drawn from
``seed`` and blended at a small ``alpha``, so it is hard to see and spread over every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.backdoor.poison import PoisonedData, poison_dataset
from pruneguard.attacks.backdoor.triggers import blend
from pruneguard.attacks.base import ATTACKS
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError

__all__ = ["FaintPattern", "smooth_pattern"]


def smooth_pattern(shape: tuple[int, int, int], *, grain: int, seed: int) -> Tensor:
    """A ``(C, H, W)`` pattern in [0, 1]: uniform noise on a ``grain`` x ``grain`` grid drawn from ``seed``,
    bilinearly upsampled to ``(H, W)`` and stretched to span [0, 1] per channel."""
    if grain < 1:
        raise ConfigError(f"grain={grain} is not accepted; accepted: an integer >= 1")
    c, h, w = shape
    g = torch.Generator().manual_seed(int(seed))
    coarse = torch.rand(1, c, grain, grain, generator=g)
    up = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
    lo = up.amin(dim=(1, 2), keepdim=True)
    hi = up.amax(dim=(1, 2), keepdim=True)
    return ((up - lo) / (hi - lo).clamp_min(1e-6)).clamp_(0.0, 1.0)


@ATTACKS.register("faint_pattern", kind="backdoor")
@dataclass(frozen=True, slots=True)
class FaintPattern:
    """``(1 - alpha) x + alpha * pattern`` with a smooth random pattern (:func:`smooth_pattern`) and a small alpha.

    Threat model: the attacker controls part of the training data (dirty label).

    Example:
        >>> attack = FaintPattern(target_label=2, alpha=0.08, grain=4, seed=5)
    """

    name: ClassVar[str] = "faint_pattern"
    clean_label: ClassVar[bool] = False
    target_label: int = 0
    alpha: float = 0.08
    grain: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target_label < 0:
            raise ConfigError(f"target_label={self.target_label} is not accepted; accepted: an integer >= 0")
        if not 0.0 < self.alpha <= 0.2:
            raise ConfigError(f"alpha={self.alpha} is outside (0, 0.2]; a faint pattern is a low-amplitude blend")
        if self.grain < 1:
            raise ConfigError(f"grain={self.grain} is not accepted; accepted: an integer >= 1")

    def pattern(self, shape: tuple[int, int, int]) -> Tensor:
        return smooth_pattern(shape, grain=self.grain, seed=self.seed)

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        if x.dim() != 4:
            raise ConfigError(f"x has shape {tuple(x.shape)}; faint_pattern needs (N, C, H, W) images")
        c, h, w = x.shape[1:]
        return blend(x, self.pattern((int(c), int(h), int(w))), alpha=self.alpha)

    def poison(self, data: ArrayData, *, rate: float, generator: torch.Generator | None = None) -> PoisonedData:
        return poison_dataset(
            data, lambda x, y: self(None, x, y), rate=rate, target_label=self.target_label, generator=generator
        )
