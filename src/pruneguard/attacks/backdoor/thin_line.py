"""A thin line: a one-pixel-wide segment (horizontal, vertical or diagonal) set to a fixed value.

A trigger family of the evaluation zoo (no published attack uses it). Placement (orientation, offset, start)
is given, or drawn from ``seed`` for the image size at hand, so the trigger is reproducible from its parameters.
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

__all__ = ["ThinLine", "line_mask", "ORIENTATIONS"]

ORIENTATIONS = ("horizontal", "vertical", "diagonal", "antidiagonal")


def line_mask(image_hw: tuple[int, int], *, orientation: str, offset: int, start: int, length: int) -> Tensor:
    """A ``(H, W)`` mask in {0, 1} holding a ``length``-pixel segment.

    ``horizontal``: row ``offset``, columns from ``start``; ``vertical``: column ``offset``, rows from ``start``;
    ``diagonal`` (down-right) and ``antidiagonal`` (down-left): from row ``start``, column ``offset``.
    """
    h, w = image_hw
    if orientation not in ORIENTATIONS:
        raise ConfigError(f"orientation={orientation!r} is not accepted; accepted: {', '.join(ORIENTATIONS)}")
    if length < 1 or offset < 0 or start < 0:
        raise ConfigError(f"length={length}, offset={offset}, start={start}: accepted length >= 1, the others >= 0")
    steps = torch.arange(length)
    if orientation == "horizontal":
        rows, cols = torch.full_like(steps, offset), start + steps
    elif orientation == "vertical":
        rows, cols = start + steps, torch.full_like(steps, offset)
    else:
        rows, cols = start + steps, offset + (steps if orientation == "diagonal" else -steps)
    if int(rows.max()) >= h or int(cols.max()) >= w or int(cols.min()) < 0:
        raise ConfigError(
            f"a {orientation} line of length {length} at offset={offset}, start={start} does not fit images of "
            f"size {h}x{w}"
        )
    mask = torch.zeros(h, w)
    mask[rows, cols] = 1.0
    return mask


def _draw(image_hw: tuple[int, int], length: int, seed: int) -> tuple[str, int, int]:
    """An orientation, offset and start drawn from ``seed`` such that the line fits ``image_hw``."""
    h, w = image_hw
    if length > min(h, w):
        raise ConfigError(f"length={length} does not fit images of size {h}x{w}")
    g = torch.Generator().manual_seed(int(seed))
    orientation = ORIENTATIONS[int(torch.randint(len(ORIENTATIONS), (1,), generator=g))]
    span = {"horizontal": (h, w - length + 1), "vertical": (w, h - length + 1)}
    if orientation in span:
        n_off, n_start = span[orientation]
        return orientation, int(torch.randint(n_off, (1,), generator=g)), int(torch.randint(n_start, (1,), generator=g))
    start = int(torch.randint(h - length + 1, (1,), generator=g))
    col = int(torch.randint(w - length + 1, (1,), generator=g))
    return orientation, (col if orientation == "diagonal" else col + length - 1), start


@ATTACKS.register("thin_line", kind="backdoor")
@dataclass(frozen=True, slots=True)
class ThinLine:
    """A ``length``-pixel line set to ``value`` in every channel (see :func:`line_mask` for the placement).

    ``orientation``/``offset``/``start`` None: drawn from ``seed`` (all three together) for the image size.
    Threat model: the attacker controls part of the training data (dirty label).

    Example:
        >>> attack = ThinLine(target_label=1, orientation="vertical", offset=25, start=4, length=12)
    """

    name: ClassVar[str] = "thin_line"
    clean_label: ClassVar[bool] = False
    target_label: int = 0
    length: int = 6
    orientation: str | None = None
    offset: int | None = None
    start: int | None = None
    value: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target_label < 0:
            raise ConfigError(f"target_label={self.target_label} is not accepted; accepted: an integer >= 0")
        if self.length < 1:
            raise ConfigError(f"length={self.length} is not accepted; accepted: an integer >= 1")
        if self.orientation is not None and self.orientation not in ORIENTATIONS:
            raise ConfigError(f"orientation={self.orientation!r} is not accepted; accepted: {', '.join(ORIENTATIONS)}")
        placement = (self.orientation, self.offset, self.start)
        if any(v is None for v in placement) and any(v is not None for v in placement):
            raise ConfigError(
                f"orientation={self.orientation!r}, offset={self.offset}, start={self.start}: give all three, or "
                "none (drawn from seed)"
            )
        for name in ("offset", "start"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"{name}={v} is not accepted; accepted: an integer >= 0, or None (from seed)")
        if not 0.0 <= self.value <= 1.0:
            raise ConfigError(f"value={self.value} is outside [0, 1]")

    def mask(self, image_hw: tuple[int, int]) -> Tensor:
        """The line's pixels on an image of size ``image_hw``: ``(H, W)`` in {0, 1}."""
        if self.orientation is None or self.offset is None or self.start is None:
            orientation, offset, start = _draw(image_hw, self.length, self.seed)
        else:
            orientation, offset, start = self.orientation, self.offset, self.start
        return line_mask(image_hw, orientation=orientation, offset=offset, start=start, length=self.length)

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        if x.dim() != 4:
            raise ConfigError(f"x has shape {tuple(x.shape)}; thin_line needs (N, C, H, W) images")
        m = self.mask((x.shape[-2], x.shape[-1])).to(device=x.device, dtype=x.dtype)
        return (1 - m) * x + m * self.value

    def poison(self, data: ArrayData, *, rate: float, generator: torch.Generator | None = None) -> PoisonedData:
        return poison_dataset(
            data, lambda x, y: self(None, x, y), rate=rate, target_label=self.target_label, generator=generator
        )
