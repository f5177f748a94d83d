"""Transfer attack (Papernot et al. 2016): craft on a surrogate model, evaluate on the target model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pruneguard.attacks.base import ATTACKS

__all__ = ["TransferAttack", "transfer_attack"]


def transfer_attack(
    source: nn.Module,
    attack: Any,
    x: Tensor,
    y: Tensor,
    *,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``attack(source, x, y)``: adversarial examples from the surrogate ``source``, for any target model.

    Paper: https://arxiv.org/abs/1605.07277 . Threat model: black box — no gradients or queries of the target.
    """
    kwargs: dict[str, Any] = {"target": target}
    if generator is not None:
        kwargs["generator"] = generator
    return attack(source, x, y, **kwargs)


@ATTACKS.register("transfer", kind="evasion")
@dataclass(frozen=True, slots=True, eq=False)
class TransferAttack:
    """Run ``attack`` on the surrogate ``source``; the model given on each call is never used.

    Example:
        >>> attack = TransferAttack(source=float_model, attack=PGD(eps=8 / 255, step_size=2 / 255, steps=10))
        >>> x_adv = attack(pruned_model, x, y)  # crafted on float_model
    """

    name: ClassVar[str] = "transfer"
    source: nn.Module
    attack: Any

    def __post_init__(self) -> None:
        if not isinstance(self.source, nn.Module):
            raise TypeError(f"source={type(self.source).__name__}; accepted: an nn.Module (the surrogate model)")
        if not callable(self.attack) or isinstance(self.attack, type | nn.Module):
            raise TypeError(f"attack={self.attack!r}; accepted: an attack object such as PGD(...)")
        if isinstance(self.attack, TransferAttack):
            raise TypeError("attack is a TransferAttack; accepted: the attack to run on the surrogate, e.g. PGD(...)")

    @property
    def eps(self) -> float | None:
        """The perturbation budget of the inner attack (``None`` if it has none)."""
        return getattr(self.attack, "eps", None)

    @property
    def norm(self) -> str:
        return str(getattr(self.attack, "norm", "linf"))

    def __call__(
        self,
        model: nn.Module | None,
        x: Tensor,
        y: Tensor,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return transfer_attack(self.source, self.attack, x, y, target=target, generator=generator)
