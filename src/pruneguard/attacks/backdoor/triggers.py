"""Trigger functions (pure): stamp a patch, blend a pattern. Inputs are float images in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pruneguard.errors import ConfigError

__all__ = ["apply_patch", "blend", "checkerboard", "noise_pattern", "corner_location", "stamp", "displace"]


def checkerboard(size: int = 3) -> Tensor:
    """The BadNets checkerboard, ``size`` x ``size`` in {0, 1}; size 3 is the ANP reference's 001/010/101."""
    if size < 2:
        raise ConfigError(f"patch size={size} must be >= 2")
    i = torch.arange(size).view(-1, 1)
    j = torch.arange(size).view(1, -1)
    board = ((i + j) % 2 == 0).float()
    if size == 3:  # the reference pattern: [[0,0,1],[0,1,0],[1,0,1]]
        board = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    return board


def corner_location(
    image_hw: tuple[int, int], patch_hw: tuple[int, int], corner: str = "bottom_right", margin: int = 1
) -> tuple[int, int]:
    """Top-left ``(row, col)`` of a patch placed ``margin`` pixels from a corner."""
    h, w = image_hw
    ph, pw = patch_hw
    rows = {"top": margin, "bottom": h - ph - margin}
    cols = {"left": margin, "right": w - pw - margin}
    try:
        v, hz = corner.split("_")
        r, c = rows[v], cols[hz]
    except (ValueError, KeyError):
        raise ConfigError(
            f"corner={corner!r} is not a corner; accepted: top_left, top_right, bottom_left, bottom_right"
        ) from None
    if margin < 0 or r < 0 or c < 0 or r + ph > h or c + pw > w:
        raise ConfigError(
            f"patch_size={ph}x{pw} with margin={margin} does not fit a {h}x{w} image; accepted: a patch that fits"
        )
    return r, c


def apply_patch(x: Tensor, patch: Tensor, *, loc: tuple[int, int]) -> Tensor:
    """Return ``x`` (``(N, C, H, W)`` in [0, 1]) with ``patch`` (``(h, w)`` or ``(C, h, w)``) pasted at ``loc``."""
    if x.dim() != 4:
        raise ConfigError(f"x has shape {tuple(x.shape)}; apply_patch needs (N, C, H, W) images")
    r, c = loc
    ph, pw = patch.shape[-2:]
    if r < 0 or c < 0 or r + ph > x.shape[-2] or c + pw > x.shape[-1]:
        raise ConfigError(f"patch of size {ph}x{pw} at loc={loc} does not fit images of size {tuple(x.shape[-2:])}")
    out = x.clone()
    out[..., r : r + ph, c : c + pw] = patch.to(device=x.device, dtype=x.dtype)
    return out


def blend(x: Tensor, pattern: Tensor, *, alpha: float) -> Tensor:
    """``(1 - alpha) * x + alpha * pattern``: the Blend trigger (Chen et al. 2017)."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha={alpha} is outside [0, 1]")
    p = pattern.to(device=x.device, dtype=x.dtype)
    return ((1.0 - alpha) * x + alpha * p).clamp_(0.0, 1.0)


def noise_pattern(shape: tuple[int, ...], *, seed: int) -> Tensor:
    """A fixed uniform-noise image in [0, 1] drawn from ``seed`` (the Blend key pattern)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.rand(shape, generator=g)


def stamp(x: Tensor, mask: Tensor, pattern: Tensor) -> Tensor:
    """``(1 − mask)·x + mask·pattern``: the Neural Cleanse trigger model (images in [0, 1])."""
    return (1 - mask) * x + mask * pattern


def displace(x: Tensor, flow: Tensor) -> Tensor:
    """Images ``(N, C, H, W)`` in [0, 1] resampled (bilinear, zeros outside) at every pixel moved by ``flow``,
    ``(2, H, W)`` or ``(N, 2, H, W)`` displacements in pixels, ``(dx, dy)``: the smooth-warp trigger model (WaNet's
    warp, written as a displacement field)."""
    if x.dim() != 4 or flow.shape[-3:] != (2, *x.shape[-2:]):
        raise ConfigError(
            f"displace needs images (N, C, H, W) and a flow (2, H, W); got {tuple(x.shape)}, {tuple(flow.shape)}"
        )
    n, _, h, w = x.shape
    flow = flow.to(device=x.device, dtype=x.dtype)
    rows, cols = torch.meshgrid(
        torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype),
        torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype),
        indexing="ij",
    )
    scale = torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], device=x.device, dtype=x.dtype)
    grid = torch.stack((cols, rows), dim=2) + flow.reshape(-1, 2, h, w).permute(0, 2, 3, 1) * scale
    out = F.grid_sample(x, grid.expand(n, -1, -1, -1), mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.clamp(0.0, 1.0)
