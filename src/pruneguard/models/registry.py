"""The model registry and its public helpers ``create_model`` / ``list_models``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from pruneguard.errors import ConfigError, UnknownNameError
from pruneguard.registry import Registry

__all__ = ["MODELS", "register_model", "create_model", "list_models", "resolve_factory"]

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str, **meta: Any) -> Callable[[ModelFactory], ModelFactory]:
    return MODELS.register(name, **meta)


def resolve_factory(arch: str) -> ModelFactory:
    """A registry name, or ``package.module:factory`` for a user's own architecture (user code is imported)."""
    if ":" not in arch:
        return MODELS.get(arch)
    module_name, _, attr = arch.partition(":")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownNameError(f"--arch={arch!r} could not be imported: {exc}") from None
    if not callable(factory):
        raise ConfigError(f"--arch={arch!r} is not callable")
    return factory  # type: ignore[no-any-return]


def create_model(
    arch: str,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    **kwargs: Any,
) -> nn.Module:
    """Build a zoo model (or a user factory ``module:fn``, called with ``num_classes`` and ``kwargs`` only).

    Example:
        >>> model = create_model("small_cnn", num_classes=10, input_shape=(1, 28, 28), mean=(0.286,), std=(0.353,))
    """
    if num_classes < 2:
        raise ConfigError(f"num_classes={num_classes} must be >= 2")
    factory = resolve_factory(arch)
    if ":" in arch:
        try:
            model = factory(num_classes=num_classes, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"arch={arch!r} cannot be called as factory(num_classes=..., **kwargs): {exc}") from None
        if not isinstance(model, nn.Module):
            raise ConfigError(f"arch={arch!r} returned {type(model).__name__}; accepted: a factory of a torch module")
        return model
    try:
        return factory(
            num_classes=num_classes,
            input_shape=tuple(input_shape),
            mean=tuple(mean),
            std=tuple(std),
            **kwargs,
        )
    except TypeError as exc:
        raise ConfigError(f"arch={arch!r} does not accept these arguments: {exc}") from None


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)
