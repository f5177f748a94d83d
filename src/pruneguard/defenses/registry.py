"""The registry of backdoor defences that purify a suspect model with the defender's clean data.

Every entry has one signature, ``defend(model, clean, config, *, seed) -> (purified copy, info)``, and a frozen
config dataclass validated on construction (a bad value raises ``ConfigError`` naming the field, the value and
what is accepted). The input model is never modified; the returned copy is in eval mode on the model's device.
FT, Fine-Pruning and NAD are thin adapters over :func:`finetune_defense`, :func:`fine_pruning` and :func:`nad`
(same results for the same settings); FT-SAM, SAU and I-BAU register in their own modules.

Example:
    >>> from pruneguard.defenses.registry import defend
    >>> purified, info = defend("ft_sam", model, clean, seed=0)
    >>> purified, info = defend("sau", model, clean, SAUConfig(rounds=20), seed=0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.defenses.fine_pruning import fine_pruning
from pruneguard.defenses.finetune_defense import finetune_defense
from pruneguard.defenses.nad import nad
from pruneguard.errors import ConfigError
from pruneguard.registry import Registry

__all__ = [
    "DEFENSES",
    "Defense",
    "DefenseFn",
    "FTConfig",
    "FinePruningConfig",
    "NADConfig",
    "check",
    "default_config",
    "defend",
    "register_defense",
]


class DefenseFn(Protocol):
    def __call__(
        self, model: nn.Module, clean: ArrayData, config: Any, *, seed: int
    ) -> tuple[nn.Module, dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class Defense:
    """A registered defence: its config class (defaults are the paper's settings scaled to our data) and its
    function."""

    config: type
    run: DefenseFn


DEFENSES: Registry[Defense] = Registry("defence")


def register_defense(name: str, config: type) -> Any:
    """Decorator: register ``fn`` under ``name`` with its config class ``config``; returns ``fn`` unchanged."""

    def decorator(fn: DefenseFn) -> DefenseFn:
        DEFENSES.register(name)(Defense(config, fn))
        return fn

    return decorator


def default_config(name: str) -> Any:
    """The default config of defence ``name`` (raises ``UnknownNameError`` for an unknown name)."""
    return DEFENSES.get(name).config()


def defend(
    name: str, model: nn.Module, clean: ArrayData, config: Any = None, *, seed: int = 0
) -> tuple[nn.Module, dict[str, Any]]:
    """Run defence ``name`` on a copy of ``model`` with ``config`` (None: its default); ``model`` is untouched."""
    entry = DEFENSES.get(name)
    cfg = entry.config() if config is None else config
    if not isinstance(cfg, entry.config):
        raise ConfigError(
            f"config={type(cfg).__name__} is not accepted for defence {name!r}; accepted: {entry.config.__name__}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed={seed!r} is not accepted; accepted: an integer")
    return entry.run(model, clean, cfg, seed=seed)


def check(ok: bool, field: str, value: Any, accepted: str) -> None:
    """Raise the one-line ``ConfigError`` of a config field unless ``ok``."""
    if not ok:
        raise ConfigError(f"{field}={value!r} is not accepted; accepted: {accepted}")


def is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def is_positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and math.isfinite(value)


def in_range(value: Any, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


@dataclass(frozen=True, slots=True)
class FTConfig:
    """FT (:func:`finetune_defense`): SGD fine-tuning on the clean data, cosine ``lr``."""

    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 128
    augment: bool = True
    keep_pruned: bool = True

    def __post_init__(self) -> None:
        check(is_int(self.epochs, 1), "epochs", self.epochs, "an integer >= 1")
        check(is_positive(self.lr), "lr", self.lr, "a positive number")
        check(is_int(self.batch_size, 2), "batch_size", self.batch_size, "an integer >= 2")


@dataclass(frozen=True, slots=True)
class FinePruningConfig:
    """Fine-Pruning (:func:`fine_pruning`): prune dormant last-conv channels within an accuracy budget, fine-tune."""

    max_acc_drop: float = 0.04
    max_ratio: float = 0.9
    step: int = 1
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 128
    augment: bool = True

    def __post_init__(self) -> None:
        check(in_range(self.max_acc_drop, 0.0, 1.0), "max_acc_drop", self.max_acc_drop, "a number in [0, 1]")
        ratio_ok = in_range(self.max_ratio, 0.0, 1.0) and 0 < self.max_ratio < 1
        check(ratio_ok, "max_ratio", self.max_ratio, "a number in (0, 1)")
        check(is_int(self.step, 1), "step", self.step, "an integer >= 1")
        check(is_int(self.epochs, 0), "epochs", self.epochs, "an integer >= 0 (0: prune only)")
        check(is_positive(self.lr), "lr", self.lr, "a positive number")
        check(is_int(self.batch_size, 2), "batch_size", self.batch_size, "an integer >= 2")


@dataclass(frozen=True, slots=True)
class NADConfig:
    """NAD (:func:`nad`): attention distillation from a fine-tuned teacher; ``betas``/``layers`` None: automatic."""

    epochs: int = 20
    teacher_epochs: int = 10
    lr: float = 0.01
    betas: tuple[float, ...] | None = None
    layers: tuple[str, ...] | None = None
    p: float = 2.0
    batch_size: int = 128
    augment: bool = True

    def __post_init__(self) -> None:
        check(is_int(self.epochs, 1), "epochs", self.epochs, "an integer >= 1")
        check(is_int(self.teacher_epochs, 1), "teacher_epochs", self.teacher_epochs, "an integer >= 1")
        check(is_positive(self.lr), "lr", self.lr, "a positive number")
        betas_ok = self.betas is None or (
            isinstance(self.betas, tuple) and len(self.betas) > 0 and all(in_range(b, 0, math.inf) for b in self.betas)
        )
        check(betas_ok, "betas", self.betas, "None or a non-empty tuple of numbers >= 0")
        layers_ok = self.layers is None or (
            isinstance(self.layers, tuple) and len(self.layers) > 0 and all(isinstance(n, str) for n in self.layers)
        )
        check(layers_ok, "layers", self.layers, "None or a non-empty tuple of module names")
        check(is_positive(self.p), "p", self.p, "a positive number")
        check(is_int(self.batch_size, 2), "batch_size", self.batch_size, "an integer >= 2")


@register_defense("ft", FTConfig)
def _ft(model: nn.Module, clean: ArrayData, config: FTConfig, *, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    return finetune_defense(
        model,
        clean,
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        augment=config.augment,
        keep_pruned=config.keep_pruned,
        seed=seed,
    )


@register_defense("fine_pruning", FinePruningConfig)
def _fine_pruning(
    model: nn.Module, clean: ArrayData, config: FinePruningConfig, *, seed: int
) -> tuple[nn.Module, dict[str, Any]]:
    return fine_pruning(
        model,
        clean,
        max_acc_drop=config.max_acc_drop,
        max_ratio=config.max_ratio,
        step=config.step,
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        augment=config.augment,
        seed=seed,
    )


@register_defense("nad", NADConfig)
def _nad(model: nn.Module, clean: ArrayData, config: NADConfig, *, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    return nad(
        model,
        clean,
        epochs=config.epochs,
        teacher_epochs=config.teacher_epochs,
        lr=config.lr,
        betas=config.betas,
        layers=config.layers,
        p=config.p,
        batch_size=config.batch_size,
        augment=config.augment,
        seed=seed,
    )
