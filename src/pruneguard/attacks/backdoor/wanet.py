"""WaNet (Nguyen & Tran 2021): an imperceptible backdoor whose trigger is a fixed smooth image warp."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.backdoor.params import check_param_types
from pruneguard.attacks.backdoor.poison import PoisonedData, poison_dataset, to_storage
from pruneguard.attacks.base import ATTACKS
from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.errors import ConfigError

__all__ = ["WaNet", "warping_grid", "warp"]


def warping_grid(height: int, width: int, *, k: int, s: float, grid_rescale: float, seed: int) -> Tensor:
    """The WaNet sampling grid ``(1, H, W, 2)`` in [-1, 1] (``grid_sample``'s ``(x, y)`` order).

    A ``(2, k, k)`` uniform field in [-1, 1], normalised to mean absolute value 1, is upsampled bicubically to
    ``H x W`` and added, scaled by ``s / H`` (rows) and ``s / W`` (columns), to the identity grid; the sum is
    multiplied by ``grid_rescale`` and clamped to [-1, 1] (the reference code's ``grid_temps``).
    """
    g = torch.Generator().manual_seed(int(seed))
    ins = torch.rand(1, 2, k, k, generator=g) * 2 - 1
    ins = ins / ins.abs().mean()
    noise = F.interpolate(ins, size=(height, width), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    identity = torch.stack((cols, rows), dim=2)[None]
    scale = torch.tensor([s / width, s / height])
    return ((identity + noise * scale) * grid_rescale).clamp(-1.0, 1.0)


def warp(x: Tensor, grid: Tensor) -> Tensor:
    """Resample float images ``(N, C, H, W)`` in [0, 1] at ``grid`` (``(1 or N, H, W, 2)``), bilinear."""
    if x.dim() != 4:
        raise ConfigError(f"x has shape {tuple(x.shape)}; WaNet needs (N, C, H, W) images")
    grid = grid.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True).clamp_(0.0, 1.0)


@ATTACKS.register("wanet", kind="backdoor")
@dataclass(frozen=True, slots=True)
class WaNet:
    """WaNet: warp images with a fixed random smooth field and relabel them to the target.

    Paper: https://arxiv.org/abs/2102.10369 (defaults are the paper's: ``k=4``, ``s=0.5``, ``grid_rescale=1``,
    ``cross_ratio=2``). Threat model: the attacker controls part of the training data. ``poison`` warps ``rate``
    of the non-target images with the fixed grid and relabels them (attack mode), and warps
    ``cross_ratio * that many`` other images with the grid plus independent per-pixel noise in
    ``[-1/H, 1/H]`` while keeping their labels (noise mode), so the network learns the exact warp rather than
    warping artefacts. The static poisoning draws the noise once instead of per batch as the reference
    training loop does. The grid is a function of ``seed`` and the image size only, so the test-time trigger
    is re-created exactly. ``PoisonedData.poison_indices`` lists the relabelled (attack-mode) rows only.

    Example:
        >>> attack = WaNet(target_label=0)
        >>> poisoned = attack.poison(train, rate=0.1, generator=torch.Generator().manual_seed(0))
    """

    name: ClassVar[str] = "wanet"
    clean_label: ClassVar[bool] = False
    target_label: int = 0
    k: int = 4
    s: float = 0.5
    grid_rescale: float = 1.0
    cross_ratio: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_param_types(self)
        checks = [
            (self.target_label >= 0, "target_label", self.target_label, "an integer >= 0"),
            (isinstance(self.k, int) and self.k >= 2, "k", self.k, "an integer >= 2"),
            (self.s > 0 and math.isfinite(self.s), "s", self.s, "a positive number"),
            (0 < self.grid_rescale <= 1, "grid_rescale", self.grid_rescale, "(0, 1]"),
            (self.cross_ratio >= 0 and math.isfinite(self.cross_ratio), "cross_ratio", self.cross_ratio, ">= 0"),
        ]
        for ok, name, value, accepted in checks:
            if not ok:
                raise ConfigError(f"{name}={value!r} is not accepted; accepted: {accepted}")

    def grid(self, height: int, width: int) -> Tensor:
        """The fixed warping grid for ``height x width`` images, ``(1, H, W, 2)``."""
        return warping_grid(height, width, k=self.k, s=self.s, grid_rescale=self.grid_rescale, seed=self.seed)

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        return warp(x, self.grid(x.shape[-2], x.shape[-1]))

    def noise_warp(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Noise mode: the grid plus uniform noise in ``[-1/H, 1/H]`` per image and pixel, clamped to [-1, 1]."""
        n, _, h, w = x.shape
        noise = (torch.rand(n, h, w, 2, generator=generator) * 2 - 1) / h
        grid = (self.grid(h, w) + noise).clamp(-1.0, 1.0)
        return warp(x, grid)

    def poison(self, data: ArrayData, *, rate: float, generator: torch.Generator | None = None) -> PoisonedData:
        """Attack mode on ``rate`` of the non-target images, noise mode on ``cross_ratio`` times as many others."""
        res = poison_dataset(
            data,
            lambda x, y: self(None, x, y),
            rate=rate,
            target_label=self.target_label,
            generator=generator,
        )
        free = torch.ones(len(data), dtype=torch.bool)
        free[res.poison_indices] = False
        others = torch.nonzero(free).flatten()
        count = min(others.numel(), int(round(self.cross_ratio * res.poison_indices.numel())))
        if count == 0:
            return res
        cross = others[torch.randperm(others.numel(), generator=generator)[:count]].sort().values
        x = res.data.x.clone()
        x[cross] = to_storage(self.noise_warp(to_float(x[cross]), generator=generator), x)
        out = ArrayData(x, res.data.y, data.num_classes, res.data.name, data.classes)
        return PoisonedData(out, res.poison_indices, self.target_label)
