"""BadNets (Gu et al. 2017): a small checkerboard patch in a corner, poisoned images relabelled to the target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from pruneguard.attacks.backdoor.params import check_param_types
from pruneguard.attacks.backdoor.poison import PoisonedData, poison_dataset
from pruneguard.attacks.backdoor.triggers import apply_patch, checkerboard, corner_location
from pruneguard.attacks.base import ATTACKS
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError

__all__ = ["BadNets"]


@ATTACKS.register("badnets", kind="backdoor")
@dataclass(frozen=True, slots=True)
class BadNets:
    """BadNets trigger: a ``patch_size`` checkerboard ``margin`` pixels from ``corner`` (paper: 3x3, bottom right).

    Paper: https://arxiv.org/abs/1708.06733 . Threat model: the attacker controls part of the training data.

    Example:
        >>> attack = BadNets(target_label=0)
        >>> poisoned = attack.poison(train, rate=0.05, generator=torch.Generator().manual_seed(0))
        >>> x_triggered = attack(None, x, y)
    """

    name: ClassVar[str] = "badnets"
    clean_label: ClassVar[bool] = False
    target_label: int = 0
    patch_size: int = 3
    corner: str = "bottom_right"
    margin: int = 1

    def __post_init__(self) -> None:
        check_param_types(self)
        if self.target_label < 0:
            raise ConfigError(f"target_label={self.target_label} must be >= 0")
        if self.patch_size < 2:
            raise ConfigError(f"patch_size={self.patch_size} must be >= 2")
        corner_location((64, 64), (self.patch_size, self.patch_size), self.corner, self.margin)

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        loc = corner_location((x.shape[-2], x.shape[-1]), (self.patch_size, self.patch_size), self.corner, self.margin)
        patch = checkerboard(self.patch_size)
        return apply_patch(x, patch, loc=loc)

    def poison(self, data: ArrayData, *, rate: float, generator: torch.Generator | None = None) -> PoisonedData:
        return poison_dataset(
            data,
            lambda x, y: self(None, x, y),
            rate=rate,
            target_label=self.target_label,
            generator=generator,
        )
