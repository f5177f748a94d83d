"""In-memory labelled data: images as uint8 or float tensors, converted to float [0, 1] per batch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from pruneguard.errors import ConfigError

__all__ = ["ArrayData", "iterate_batches", "to_float"]


def to_float(x: Tensor) -> Tensor:
    """uint8 images -> float32 in [0, 1]; float inputs pass through unchanged."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


@dataclass(frozen=True)
class ArrayData:
    """A labelled dataset held in memory.

    Attributes:
        x: ``(N, C, H, W)`` uint8 images (0..255) or float features/images (images in [0, 1]).
        y: ``(N,)`` int64 labels in ``[0, num_classes)``.
        num_classes: number of classes.
        name: dataset name (for reports).
        classes: optional class names.
    """

    x: Tensor
    y: Tensor
    num_classes: int
    name: str = "data"
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ConfigError(f"x has {self.x.shape[0]} rows but y has {self.y.shape[0]}; they must match")
        if self.y.numel() and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise ConfigError(
                f"labels of {self.name} span [{int(self.y.min())}, {int(self.y.max())}]; "
                f"accepted: [0, {self.num_classes - 1}] for num_classes={self.num_classes}"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    def subset(self, index: Tensor, name: str | None = None) -> ArrayData:
        index = torch.as_tensor(index, dtype=torch.long)
        return ArrayData(self.x[index], self.y[index], self.num_classes, name or self.name, self.classes)

    def float_x(self) -> Tensor:
        return to_float(self.x)


def iterate_batches(
    data: ArrayData,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x, y)`` float batches; a seeded ``generator`` fixes the order when shuffling."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        x, y = to_float(data.x[idx]), data.y[idx]
        if device is not None and device.type != "cpu":
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        yield x, y
