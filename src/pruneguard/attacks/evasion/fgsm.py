"""Fast gradient sign method (Goodfellow et al. 2015): one L-inf step of size ``eps``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from pruneguard.attacks.base import ATTACKS
from pruneguard.attacks.evasion._common import Bound, check_bounds, check_eps, check_inputs
from pruneguard.attacks.evasion.pgd import pgd

__all__ = ["FGSM", "fgsm"]


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    target: Tensor | None = None,
    clip_min: Bound = 0.0,
    clip_max: Bound = 1.0,
) -> Tensor:
    """``x + eps * sign(grad)`` (or ``-`` towards ``target``), clipped to ``[clip_min, clip_max]``.

    Paper: https://arxiv.org/abs/1412.6572 . Threat model: white box. ``x`` is a float batch ``(N, ...)``; the
    result has its shape, dtype and device; ``model``'s flags are restored.

    Example:
        >>> x_adv = fgsm(model, x, y, eps=8 / 255)
    """
    check_bounds(clip_min, clip_max)
    check_eps(eps, "linf", clip_min, clip_max)
    if eps == 0:
        check_inputs(x, y, target, clip_min, clip_max)
        return x.detach().clone()
    return pgd(
        model,
        x,
        y,
        eps=eps,
        step_size=eps,
        steps=1,
        norm="linf",
        random_start=False,
        target=target,
        clip_min=clip_min,
        clip_max=clip_max,
    )


@ATTACKS.register("fgsm", kind="evasion")
@dataclass(frozen=True, slots=True)
class FGSM:
    """FGSM hyperparameters; calling the object runs :func:`fgsm` (deterministic: ``generator`` is unused).

    Example:
        >>> x_adv = FGSM(eps=8 / 255)(model, x, y)
    """

    name: ClassVar[str] = "fgsm"
    eps: float = 8 / 255
    clip_min: float = 0.0
    clip_max: float = 1.0

    def __post_init__(self) -> None:
        check_bounds(self.clip_min, self.clip_max)
        check_eps(self.eps, "linf", self.clip_min, self.clip_max)

    def __call__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return fgsm(model, x, y, eps=self.eps, target=target, clip_min=self.clip_min, clip_max=self.clip_max)
