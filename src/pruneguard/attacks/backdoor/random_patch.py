"""A patch of random shape: a random connected mask of ``pixels`` cells stamped at a given position.

A trigger family of the evaluation zoo (no published attack uses it): its shape is drawn from ``seed``, so the
trigger is reproducible from the attack's parameters alone; its position is given (or drawn from ``seed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from pruneguard.attacks.backdoor.poison import PoisonedData, poison_dataset
from pruneguard.attacks.base import ATTACKS
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError

__all__ = ["RandomPatch", "random_connected_mask", "stamp_mask", "random_location"]

_STEPS = ((0, 1), (1, 0), (0, -1), (-1, 0))


def random_connected_mask(size: int, pixels: int, *, seed: int) -> Tensor:
    """A ``(size, size)`` float mask in {0, 1} with ``pixels`` ones forming one 4-connected shape.

    The shape grows from the box's centre by adding a random free 4-neighbour of the cells already in it, all
    draws coming from ``seed``.
    """
    if size < 1:
        raise ConfigError(f"size={size} is not accepted; accepted: an integer >= 1")
    if not 1 <= pixels <= size * size:
        raise ConfigError(f"pixels={pixels} is not accepted; accepted: an integer in [1, {size * size}] (size={size})")
    g = torch.Generator().manual_seed(int(seed))
    mask = torch.zeros(size, size)
    cells = [(size // 2, size // 2)]
    mask[cells[0]] = 1.0
    while len(cells) < pixels:
        frontier = sorted(
            {
                (r + dr, c + dc)
                for r, c in cells
                for dr, dc in _STEPS
                if 0 <= r + dr < size and 0 <= c + dc < size and mask[r + dr, c + dc] == 0
            }
        )
        cell = frontier[int(torch.randint(len(frontier), (1,), generator=g))]
        mask[cell] = 1.0
        cells.append(cell)
    return mask


def random_location(image_hw: tuple[int, int], box_hw: tuple[int, int], *, seed: int) -> tuple[int, int]:
    """Top-left ``(row, col)`` of a ``box_hw`` box placed uniformly inside ``image_hw``, drawn from ``seed``."""
    h, w = image_hw
    bh, bw = box_hw
    if bh > h or bw > w:
        raise ConfigError(f"a {bh}x{bw} trigger does not fit images of size {h}x{w}")
    g = torch.Generator().manual_seed(int(seed) + 1)
    return int(torch.randint(h - bh + 1, (1,), generator=g)), int(torch.randint(w - bw + 1, (1,), generator=g))


def stamp_mask(x: Tensor, mask: Tensor, *, value: float, loc: tuple[int, int]) -> Tensor:
    """Return ``x`` (``(N, C, H, W)`` in [0, 1]) with the pixels where ``mask`` (``(h, w)``) is 1 set to ``value``
    in every channel, the mask's top-left corner at ``loc``."""
    if x.dim() != 4:
        raise ConfigError(f"x has shape {tuple(x.shape)}; stamp_mask needs (N, C, H, W) images")
    r, c = loc
    mh, mw = mask.shape
    if r < 0 or c < 0 or r + mh > x.shape[-2] or c + mw > x.shape[-1]:
        raise ConfigError(f"a {mh}x{mw} mask at loc={loc} does not fit images of size {tuple(x.shape[-2:])}")
    out = x.clone()
    m = mask.to(device=x.device, dtype=x.dtype)
    region = out[..., r : r + mh, c : c + mw]
    out[..., r : r + mh, c : c + mw] = (1 - m) * region + m * value
    return out


@ATTACKS.register("random_patch", kind="backdoor")
@dataclass(frozen=True, slots=True)
class RandomPatch:
    """A random connected shape of ``pixels`` cells inside a ``size`` x ``size`` box, set to ``value``.

    The box's top-left corner is ``(row, col)``; with ``row``/``col`` None it is drawn from ``seed`` for the
    image size at hand. Threat model: the attacker controls part of the training data (dirty label).

    Example:
        >>> attack = RandomPatch(target_label=3, size=4, pixels=7, row=2, col=20, seed=11)
        >>> x_triggered = attack(None, x, y)
    """

    name: ClassVar[str] = "random_patch"
    clean_label: ClassVar[bool] = False
    target_label: int = 0
    size: int = 4
    pixels: int = 8
    row: int | None = None
    col: int | None = None
    value: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target_label < 0:
            raise ConfigError(f"target_label={self.target_label} is not accepted; accepted: an integer >= 0")
        if self.size < 1:
            raise ConfigError(f"size={self.size} is not accepted; accepted: an integer >= 1")
        if not 1 <= self.pixels <= self.size * self.size:
            raise ConfigError(f"pixels={self.pixels} is not accepted; accepted: an integer in [1, size^2]")
        for name in ("row", "col"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"{name}={v} is not accepted; accepted: an integer >= 0, or None (from seed)")
        if not 0.0 <= self.value <= 1.0:
            raise ConfigError(f"value={self.value} is outside [0, 1]")

    def mask(self) -> Tensor:
        """The trigger's shape: ``(size, size)`` in {0, 1}."""
        return random_connected_mask(self.size, self.pixels, seed=self.seed)

    def location(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        drawn = random_location(image_hw, (self.size, self.size), seed=self.seed)
        return (drawn[0] if self.row is None else self.row, drawn[1] if self.col is None else self.col)

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        loc = self.location((x.shape[-2], x.shape[-1]))
        return stamp_mask(x, self.mask(), value=self.value, loc=loc)

    def poison(self, data: ArrayData, *, rate: float, generator: torch.Generator | None = None) -> PoisonedData:
        return poison_dataset(
            data, lambda x, y: self(None, x, y), rate=rate, target_label=self.target_label, generator=generator
        )
