"""SIG (Barni et al. 2019): a clean-label backdoor with a horizontal sinusoidal signal as the trigger."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from pruneguard.attacks.backdoor.params import check_param_types
from pruneguard.attacks.backdoor.poison import PoisonedData, poison_dataset
from pruneguard.attacks.base import ATTACKS
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError

__all__ = ["SIG", "sinusoidal_signal", "add_signal"]


def sinusoidal_signal(width: int, *, delta: float, frequency: float) -> Tensor:
    """The SIG signal ``v(j) = delta * sin(2 pi j f / W)`` over the ``width`` columns, shape ``(W,)``.

    It varies along the columns only and is the same on every row and channel (Barni et al., eq. 4).
    """
    j = torch.arange(width, dtype=torch.float64)
    return (delta * torch.sin(2.0 * math.pi * j * frequency / width)).float()


def add_signal(x: Tensor, *, delta: float, frequency: float) -> Tensor:
    """``clip(x + v, 0, 1)`` for float images ``(N, C, H, W)`` in [0, 1]; a new tensor of ``x``'s dtype/device."""
    if x.dim() != 4:
        raise ConfigError(f"x has shape {tuple(x.shape)}; the SIG signal needs (N, C, H, W) images")
    v = sinusoidal_signal(x.shape[-1], delta=delta, frequency=frequency)
    if float(v.abs().max()) < 1e-3 * delta:
        raise ConfigError(
            f"frequency={frequency} is not accepted for images of width {x.shape[-1]}: 2 * f / W is an integer, so "
            "the signal is zero on every pixel; accepted: a frequency that is not a multiple of W / 2"
        )
    v = v.to(device=x.device, dtype=x.dtype)
    return (x + v.view(1, 1, 1, -1)).clamp_(0.0, 1.0)


@ATTACKS.register("sig", kind="backdoor")
@dataclass(frozen=True, slots=True)
class SIG:
    """SIG: ``x + delta * sin(2 pi j f / W)`` added to target-class training images, labels kept (clean label).

    Paper: https://arxiv.org/abs/1902.11237 (sinusoidal signal, delta=20 on 0..255 images and f=6; here
    ``delta=20/255`` because images are in [0, 1]). Threat model: the attacker adds the signal to a ``rate``
    fraction of the target-class training images without changing any label, so the network associates the
    signal with the target class. The test-time trigger is the same signal with amplitude ``test_delta``
    (``None``: ``delta``; the paper also reports a stronger test signal).

    Example:
        >>> attack = SIG(target_label=0)
        >>> poisoned = attack.poison(train, rate=0.8, generator=torch.Generator().manual_seed(0))
        >>> x_triggered = attack(None, x, y)
    """

    name: ClassVar[str] = "sig"
    clean_label: ClassVar[bool] = True
    target_label: int = 0
    delta: float = 20 / 255
    frequency: float = 6.0
    test_delta: float | None = None

    def __post_init__(self) -> None:
        check_param_types(self)
        if self.target_label < 0:
            raise ConfigError(f"target_label={self.target_label} is not accepted; accepted: an integer >= 0")
        for name, value in (("delta", self.delta), ("test_delta", self.test_delta)):
            if value is not None and not (0.0 < value <= 1.0):
                hint = f" — images are in [0, 1]; did you mean {value}/255?" if value > 1 else ""
                raise ConfigError(f"{name}={value} is not accepted; accepted: (0, 1]{hint}")
        if not (self.frequency > 0 and math.isfinite(self.frequency)):
            raise ConfigError(f"frequency={self.frequency} is not accepted; accepted: a positive number")

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        delta = self.delta if self.test_delta is None else self.test_delta
        return add_signal(x, delta=delta, frequency=self.frequency)

    def poison(self, data: ArrayData, *, rate: float, generator: torch.Generator | None = None) -> PoisonedData:
        """Add the signal (amplitude ``delta``) to ``rate`` of the target-class images; no label changes."""
        return poison_dataset(
            data,
            lambda x, y: add_signal(x, delta=self.delta, frequency=self.frequency),
            rate=rate,
            target_label=self.target_label,
            relabel=False,
            only_target_class=True,
            generator=generator,
        )
