"""AutoAttack (Croce & Hein 2020) through the reference ``pyautoattack`` package: a thin wrapper."""

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
    check_scalar_bounds,
    isolated_rng,
    kept_trace,
    seed_from,
)
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.utils.modes import eval_mode, fast_layout, frozen

__all__ = ["AutoAttack", "autoattack", "AUTOATTACK_ATTACKS", "AUTOATTACK_VERSIONS"]

AUTOATTACK_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
AUTOATTACK_VERSIONS = ("standard", "plus", "rand", "custom")
_DLR = ("apgd-dlr", "apgd-t")  # the DLR loss reads the top-3 logits
_PYAA_NORM = {"linf": "Linf", "l2": "L2"}


def check_autoattack_params(
    eps: float, norm: str, version: str, attacks: tuple[str, ...] | None, clip_min: Bound = 0.0, clip_max: Bound = 1.0
) -> None:
    check_norm(norm)
    check_scalar_bounds(clip_min, clip_max, "AutoAttack")
    check_eps(eps, norm, clip_min, clip_max)
    if version not in AUTOATTACK_VERSIONS:
        raise ConfigError(
            f"version={version!r} is not an AutoAttack version; accepted: {', '.join(AUTOATTACK_VERSIONS)}"
        )
    if version == "custom":
        if not attacks:
            raise ConfigError(
                f"attacks={attacks!r} with version='custom'; accepted: a non-empty subset of "
                f"{', '.join(AUTOATTACK_ATTACKS)}"
            )
        unknown = [a for a in attacks if a not in AUTOATTACK_ATTACKS]
        if unknown:
            raise ConfigError(
                f"attacks={list(attacks)!r} has unknown {unknown}; accepted: {', '.join(AUTOATTACK_ATTACKS)}"
            )
    elif attacks is not None:
        raise ConfigError(
            f"attacks={list(attacks)!r} with version={version!r}; accepted: attacks=None, "
            "or version='custom' to choose the attacks"
        )


def autoattack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "linf",
    version: str = "standard",
    attacks: tuple[str, ...] | None = None,
    generator: torch.Generator | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> Tensor:
    """Run ``pyautoattack.AutoAttack`` on the device of ``x`` and return its ``x_adv``.

    Paper: https://arxiv.org/abs/2003.01690 . Threat model: white box, untargeted (``apgd-t``/``fab-t`` pick their
    own target classes). ``version="standard"`` runs APGD-CE, APGD-T, FAB-T and Square (5000 queries);
    ``version="custom"`` runs ``attacks`` only. AutoAttack seeds the global RNG itself: the seed is drawn from
    ``generator`` and the global RNG state is restored afterwards. Inputs are mapped to [0, 1] when
    ``[clip_min, clip_max]`` is another box.

    Example:
        >>> x_adv = autoattack(model, x, y, eps=8 / 255, version="custom", attacks=("apgd-ce", "apgd-t"))
    """
    from pyautoattack import AutoAttack as _PyAutoAttack  # optional dependency, imported on use

    attacks = tuple(attacks) if attacks is not None else None
    check_autoattack_params(eps, norm, version, attacks, clip_min, clip_max)
    check_inputs(x, y, None, clip_min, clip_max)
    seed = seed_from(generator)
    x, net = x.detach(), UnitBox(model, clip_min, clip_max)
    with eval_mode(model), frozen(model), fast_layout(model), isolated_rng(x.device), kept_trace():
        with torch.no_grad():
            num_classes = int(net(net.to_unit(x[:1])).shape[-1])
        adversary = _PyAutoAttack(
            net,
            attacks=list(attacks) if attacks else None,
            device=x.device,
            eps=eps / net.scale,
            norm=_PYAA_NORM[norm],
            seed=seed,
            version=version,
        )
        _check_classes(num_classes, adversary.attacks_to_run)
        adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, num_classes - 1)
        adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, num_classes - 1)
        u_adv, _ = adversary.run_standard_evaluation(net.to_unit(x), y.to(x.device), batch_size=max(1, len(x)))
    return net.from_unit(u_adv.to(dtype=x.dtype))


def _check_classes(num_classes: int, attacks: list[str]) -> None:
    needs_dlr = [a for a in attacks if a in _DLR]
    if needs_dlr and num_classes < 4:
        raise IncompatibleModelError(
            f"the model has {num_classes} classes; {', '.join(needs_dlr)} need >= 4 (DLR "
            "loss); use version='custom' with attacks such as ('apgd-ce', 'fab', 'square')"
        )


@ATTACKS.register("autoattack", kind="evasion")
@dataclass(frozen=True, slots=True)
class AutoAttack:
    """AutoAttack settings; calling the object runs :func:`autoattack` (untargeted only).

    Example:
        >>> x_adv = AutoAttack(eps=8 / 255)(model, x, y, generator=torch.Generator().manual_seed(0))
    """

    name: ClassVar[str] = "autoattack"
    eps: float = 8 / 255
    norm: str = "linf"
    version: str = "standard"
    attacks: tuple[str, ...] | None = None
    clip_min: float = 0.0
    clip_max: float = 1.0

    def __post_init__(self) -> None:
        if self.attacks is not None and not isinstance(self.attacks, str):
            object.__setattr__(self, "attacks", tuple(self.attacks))
        if isinstance(self.attacks, str):
            raise ConfigError(f"attacks={self.attacks!r} is a string; accepted: a list such as ['apgd-ce']")
        check_autoattack_params(self.eps, self.norm, self.version, self.attacks, self.clip_min, self.clip_max)

    def __call__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if target is not None:
            raise ConfigError("target= was given; AutoAttack is untargeted — use PGD or Square for a targeted attack")
        return autoattack(
            model,
            x,
            y,
            eps=self.eps,
            norm=self.norm,
            version=self.version,
            attacks=self.attacks,
            generator=generator,
            clip_min=self.clip_min,
            clip_max=self.clip_max,
        )
