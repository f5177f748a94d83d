"""Blend (Chen et al. 2017): a fixed random-noise key pattern blended into the whole image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from pruneguard.attacks.backdoor.params import check_param_types
from pruneguard.attacks.backdoor.poison import PoisonedData, poison_dataset
from pruneguard.attacks.backdoor.triggers import blend, noise_pattern
from pruneguard.attacks.base import ATTACKS
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError

__all__ = ["Blend"]


@ATTACKS.register("blend", kind="backdoor")
@dataclass(frozen=True, slots=True)
class Blend:
    """Blend trigger ``(1 - alpha) x + alpha * pattern``; the pattern is uniform noise fixed by ``pattern_seed``.

    Paper: https://arxiv.org/abs/1712.05526 (alpha 0.2 as in the ANP reference).
    """

    name: ClassVar[str] = "blend"
    clean_label: ClassVar[bool] = False
    target_label: int = 0
    alpha: float = 0.2
    pattern_seed: int = 1234

    def __post_init__(self) -> None:
        check_param_types(self)
        if self.target_label < 0:
            raise ConfigError(f"target_label={self.target_label} must be >= 0")
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"alpha={self.alpha} is outside (0, 1]")

    def pattern(self, shape: tuple[int, ...]) -> Tensor:
        return noise_pattern(shape, seed=self.pattern_seed)

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        return blend(x, self.pattern(tuple(x.shape[1:])), alpha=self.alpha)

    def poison(self, data: ArrayData, *, rate: float, generator: torch.Generator | None = None) -> PoisonedData:
        return poison_dataset(
            data,
            lambda x, y: self(None, x, y),
            rate=rate,
            target_label=self.target_label,
            generator=generator,
        )
