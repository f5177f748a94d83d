"""The model registry and its public helpers ``create_model`` / ``list_models``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
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


class NormalizeInputs:
    """Forward pre-hook giving a user model (``module:factory``) that expects normalised inputs
    ``(x - mean) / std`` of the [0, 1] inputs pruneguard feeds every model. A hook, not a wrapper layer, so the
    model's state dict keeps the user's own names; it survives ``copy.deepcopy`` and ONNX tracing."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean, self.std = mean, std

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return ((x - mean) / std, *args[1:])


def create_model(
    arch: str,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    **kwargs: Any,
) -> nn.Module:
    """Build a zoo model (or a user factory ``module:fn``, called with ``num_classes`` and ``kwargs`` only; a
    ``mean``/``std`` other than the identity is then applied to its inputs by a forward pre-hook).

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
        if any(m != 0.0 for m in mean) or any(s != 1.0 for s in std):
            model.register_forward_pre_hook(NormalizeInputs(tuple(mean), tuple(std)))
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
