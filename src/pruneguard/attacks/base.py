"""The Attack protocol shared by evasion and backdoor attacks, and the attack registry."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import Tensor, nn

from pruneguard.registry import Registry

__all__ = ["Attack", "BackdoorAttack", "ATTACKS"]


@runtime_checkable
class Attack(Protocol):
    """``x`` is a float batch in [0, 1]; the result has the same shape, dtype and device."""

    name: ClassVar[str]

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class BackdoorAttack(Attack, Protocol):
    """A backdoor attack also poisons training data; ``__call__`` stamps the test-time trigger (model unused)."""

    target_label: int
    clean_label: ClassVar[bool]

    def poison(self, data: Any, *, rate: float, generator: Any = None) -> Any: ...


ATTACKS: Registry[Any] = Registry("attack")
