"""Projections onto eps-balls (pure functions); ``delta`` is a batch of perturbations ``(N, ...)``."""

from __future__ import annotations

from torch import Tensor

__all__ = ["project_linf", "project_l2", "l2_norms"]


def l2_norms(v: Tensor) -> Tensor:
    """Per-example L2 norms of a batch ``(N, ...)``, shaped ``(N, 1, ..., 1)`` to broadcast against ``v``."""
    return v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))


def project_linf(delta: Tensor, eps: float) -> Tensor:
    """Clip every coordinate of ``delta`` to ``[-eps, eps]``."""
    return delta.clamp(-eps, eps)


def project_l2(delta: Tensor, eps: float) -> Tensor:
    """Rescale each example of ``delta`` whose L2 norm exceeds ``eps`` onto the sphere of radius ``eps``."""
    return delta * (eps / l2_norms(delta).clamp_min(1e-12)).clamp(max=1.0)
