"""Square Attack (Andriushchenko et al. 2020): score-based, gradient-free, via ``pyautoattack.SquareAttack``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from pruneguard.attacks.base import ATTACKS
from pruneguard.attacks.evasion._common import (
    Bound,
    UnitBox,
    check_eps,
    check_inputs,
    check_norm,
    check_positive_int,
    check_scalar_bounds,
    isolated_rng,
    seed_from,
)
from pruneguard.errors import ConfigError
from pruneguard.utils.modes import eval_mode, fast_layout, frozen

__all__ = ["Square", "square"]

_PYAA_NORM = {"linf": "Linf", "l2": "L2"}


def check_square_params(
    eps: float, norm: str, n_queries: int, p_init: float, restarts: int, clip_min: Bound = 0.0, clip_max: Bound = 1.0
) -> None:
    check_norm(norm)
    check_scalar_bounds(clip_min, clip_max, "Square")
    check_eps(eps, norm, clip_min, clip_max)
    check_positive_int(n_queries, "n_queries")
    check_positive_int(restarts, "restarts")
    if not isinstance(p_init, int | float) or not 0.0 < p_init <= 1.0:
        raise ConfigError(f"p_init={p_init!r} is outside (0, 1]; it is the initial fraction of pixels changed")


def square(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "linf",
    n_queries: int = 5000,
    p_init: float = 0.8,
    restarts: int = 1,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Tensor:
    """Random square-shaped updates accepted when they lower the margin; uses only the model's logits.

    Paper: https://arxiv.org/abs/1912.00049 . Threat model: black box with scores, at most ``n_queries`` queries
    per example and restart. ``x`` must be images ``(N, C, H, W)``. Untargeted on the margin loss, or targeted
    (cross-entropy to ``target``). The seed is drawn from ``generator``; the global RNG state is restored.

    Example:
        >>> x_adv = square(model, x, y, eps=8 / 255, n_queries=1000, generator=torch.Generator().manual_seed(0))
    """
    from pyautoattack.square import SquareAttack  # optional dependency, imported on use

    check_square_params(eps, norm, n_queries, p_init, restarts, clip_min, clip_max)
    check_inputs(x, y, target, clip_min, clip_max)
    if x.dim() != 4:
        raise ConfigError(f"x has shape {tuple(x.shape)}; Square accepts only images (N, C, H, W)")
    seed = seed_from(generator)
    x, net = x.detach(), UnitBox(model, clip_min, clip_max)
    labels = (y if target is None else target).to(x.device)
    with eval_mode(model), frozen(model), fast_layout(model), isolated_rng(x.device), torch.no_grad():
        attack = SquareAttack(
            net,
            norm=_PYAA_NORM[norm],
            n_queries=n_queries,
            eps=eps / net.scale,
            p_init=p_init,
            n_restarts=restarts,
            seed=seed,
            verbose=False,
            targeted=target is not None,
            loss="margin",
            resc_schedule=True,
            device=x.device,
        )
        u_adv = attack.perturb(net.to_unit(x), labels)
    return net.from_unit(u_adv.to(dtype=x.dtype))


@ATTACKS.register("square", kind="evasion")
@dataclass(frozen=True, slots=True)
class Square:
    """Square Attack settings; calling the object runs :func:`square`.

    Example:
        >>> x_adv = Square(eps=8 / 255, n_queries=1000)(model, x, y, generator=torch.Generator().manual_seed(0))
    """

    name: ClassVar[str] = "square"
    eps: float = 8 / 255
    norm: str = "linf"
    n_queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1
    clip_min: float = 0.0
    clip_max: float = 1.0

    def __post_init__(self) -> None:
        check_square_params(
            self.eps, self.norm, self.n_queries, self.p_init, self.restarts, self.clip_min, self.clip_max
        )

    def __call__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return square(
            model,
            x,
            y,
            eps=self.eps,
            norm=self.norm,
            n_queries=self.n_queries,
            p_init=self.p_init,
            restarts=self.restarts,
            target=target,
            generator=generator,
            clip_min=self.clip_min,
            clip_max=self.clip_max,
        )
