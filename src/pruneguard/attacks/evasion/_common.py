"""Helpers shared by the evasion attacks: validation, bounds, random draws, losses and RNG isolation."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.errors import ConfigError

Bound = float | Tensor
NORMS = ("linf", "l2")


def check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ConfigError(f"norm={norm!r} is not supported; accepted: {', '.join(NORMS)}")


def check_bounds(clip_min: Bound, clip_max: Bound) -> None:
    lo, hi = torch.as_tensor(clip_min), torch.as_tensor(clip_max)
    if not bool(torch.all(lo < hi)):
        raise ConfigError(f"clip_min={clip_min} and clip_max={clip_max}: accepted clip_min < clip_max")


def check_eps(eps: float, norm: str, clip_min: Bound = 0.0, clip_max: Bound = 1.0, name: str = "eps") -> None:
    """``eps`` >= 0; for ``linf`` also at most the width of the input box (with a hint for 8 vs 8/255)."""
    if not isinstance(eps, int | float) or isinstance(eps, bool) or not math.isfinite(eps) or eps < 0:
        raise ConfigError(f"{name}={eps!r} is invalid; accepted: a finite number >= 0")
    if norm == "linf":
        width = float(torch.max(torch.as_tensor(clip_max) - torch.as_tensor(clip_min)))
        if eps > width:
            hint = f" — did you mean {eps:g}/255?" if width == 1.0 else ""
            raise ConfigError(f"{name}={eps:g} is outside [0, {width:g}] (the width of the input box){hint}")


def check_positive_int(value: int, name: str, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name}={value!r} is invalid; accepted: an integer >= {minimum}")


def check_positive(value: float, name: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={value!r} is invalid; accepted: a finite number > 0")


def check_inputs(x: Tensor, y: Tensor, target: Tensor | None, clip_min: Bound = 0.0, clip_max: Bound = 1.0) -> None:
    """``x`` float ``(N, ...)`` inside ``[clip_min, clip_max]``; ``y`` and ``target`` int labels of shape ``(N,)``."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point tensor; got {type(x).__name__} "
            f"{getattr(x, 'dtype', '')} — convert uint8 images with x.float() / 255"
        )
    if x.dim() < 2:
        raise ConfigError(f"x has shape {tuple(x.shape)}; accepted: a batch (N, ...) with at least 2 dimensions")
    for label_name, labels in (("y", y), ("target", target)):
        if labels is None:
            continue
        if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.shape != (x.shape[0],):
            raise ConfigError(
                f"{label_name} has shape {tuple(getattr(labels, 'shape', ()))}; accepted: integer "
                f"class labels of shape ({x.shape[0]},)"
            )
    lo, hi = as_bound(clip_min, x), as_bound(clip_max, x)
    if x.numel() and bool(((x < lo) | (x > hi)).any()):
        hint = " — images must be scaled to [0, 1]" if float(x.max()) > 1.5 else ""
        raise ConfigError(
            f"x spans [{float(x.min()):g}, {float(x.max()):g}], outside "
            f"[clip_min, clip_max] = [{_fmt(clip_min)}, {_fmt(clip_max)}]{hint}"
        )


def _fmt(v: Bound) -> str:
    return f"{v:g}" if isinstance(v, int | float) else "tensor"


def as_bound(v: Bound, x: Tensor) -> Tensor:
    """A clip bound as a tensor on ``x``'s device and dtype, broadcastable against ``x``."""
    return torch.as_tensor(v, dtype=x.dtype, device=x.device)


def rand_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """``U[0, 1)`` noise shaped like ``x``, drawn from ``generator`` (on its own device) or the global RNG."""
    if generator is None:
        return torch.rand_like(x)
    return torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def randint(high: int, size: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randint(high, (size,), generator=generator, device=gen_device).to(device)


def seed_from(generator: torch.Generator | None) -> int:
    """A seed for third-party code that seeds the global RNG itself; drawn from ``generator`` or the global RNG."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device))


def view_per_example(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a ``(N,)`` tensor to broadcast against ``x`` of shape ``(N, ...)``."""
    return v.view(-1, *([1] * (x.dim() - 1)))


def example_loss(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Per-example loss the attacker maximises: CE to ``y`` (untargeted) or minus CE to ``target``."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def success(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Per-example attack success: misclassified (untargeted) or classified as ``target``."""
    pred = logits.argmax(dim=1)
    return pred != y if target is None else pred == target


@contextlib.contextmanager
def isolated_rng(device: torch.device) -> Iterator[None]:
    """Restore the global CPU and accelerator RNG states after code that calls ``torch.manual_seed`` itself."""
    devices: list[torch.device] = []
    device_type = device.type if device.type != "cpu" else None
    if device_type is None and torch.accelerator.is_available():
        acc = torch.accelerator.current_accelerator()
        if acc is not None:
            device_type = acc.type
            devices = [torch.device(acc.type, torch.accelerator.current_device_index())]
    elif device_type is not None:
        devices = [device]
    with torch.random.fork_rng(devices=devices, device_type=device_type or "cpu"):
        yield


@contextlib.contextmanager
def kept_trace() -> Iterator[None]:
    """Restore ``sys.settrace`` after third-party checks that reset it (keeps debuggers and coverage working)."""
    previous = sys.gettrace()
    try:
        yield
    finally:
        sys.settrace(previous)


class UnitBox(nn.Module):
    """``model`` seen through the affine map ``[0, 1] -> [clip_min, clip_max]`` (for code that assumes [0, 1])."""

    def __init__(self, model: nn.Module, clip_min: float, clip_max: float) -> None:
        super().__init__()
        self.model, self.low, self.scale = model, float(clip_min), float(clip_max) - float(clip_min)

    def forward(self, u: Tensor) -> Tensor:
        return self.model(u * self.scale + self.low)

    def to_unit(self, x: Tensor) -> Tensor:
        return ((x - self.low) / self.scale).clamp_(0.0, 1.0)

    def from_unit(self, u: Tensor) -> Tensor:
        return (u * self.scale + self.low).clamp_(self.low, self.low + self.scale)


def check_scalar_bounds(clip_min: Bound, clip_max: Bound, attack: str) -> None:
    if not all(isinstance(b, int | float) and not isinstance(b, bool) for b in (clip_min, clip_max)):
        raise ConfigError(f"clip_min/clip_max={clip_min!r}/{clip_max!r}: {attack} accepts only numbers")
    check_bounds(clip_min, clip_max)
