"""Unstructured L1-magnitude pruning (Han et al. 2015, https://arxiv.org/abs/1506.02626), global or per layer.

The smallest-magnitude conv/linear weights are masked out. ``scope="global"`` ranks all prunable weights
together (layers end up with different sparsities); ``scope="layer"`` prunes every layer to the same fraction.
Already-zero (masked) weights rank first, so planning on a masked model extends its masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pruneguard.errors import ConfigError
from pruneguard.pruning.base import PRUNERS, PruningPlan, effective_weight, prunable_modules

__all__ = ["MagnitudePruner", "l1_scores", "smallest_mask"]

_SCOPES = ("global", "layer")


def l1_scores(weight: Tensor) -> Tensor:
    """Per-weight importance: ``|w|``, same shape as ``weight`` (detached)."""
    return weight.detach().abs()


def smallest_mask(scores: Tensor, count: int) -> Tensor:
    """A bool mask of ``scores``' shape that is ``False`` at exactly the ``count`` smallest scores.

    Ties are broken by position (stable sort), so the result is deterministic.
    """
    flat = scores.flatten()
    if not 0 <= count <= flat.numel():
        raise ValueError(f"count={count} is outside [0, {flat.numel()}]")
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.argsort(flat, stable=True)[:count]] = False
    return keep.view_as(scores)


@dataclass(frozen=True, slots=True)
class MagnitudePruner:
    """Unstructured L1 magnitude pruner.

    Args:
        sparsity: fraction of the prunable weights to remove, in [0, 1).
        scope: ``"global"`` (one ranking over all layers) or ``"layer"`` (each layer pruned to ``sparsity``).
        include_classifier: also prune the final classifier's weight.

    Example:
        >>> plan = MagnitudePruner(sparsity=0.5).plan(model)
        >>> apply_plan_(model, plan)   # masks stay on during fine-tuning
        >>> make_permanent_(model)
    """

    name: ClassVar[str] = "magnitude"
    sparsity: float = 0.5
    scope: str = "global"
    include_classifier: bool = True

    def __post_init__(self) -> None:
        if not (0.0 <= self.sparsity < 1.0) or not math.isfinite(self.sparsity):
            raise ConfigError(f"sparsity={self.sparsity} is outside [0, 1)")
        if self.scope not in _SCOPES:
            raise ConfigError(f"scope={self.scope!r} is not accepted; accepted: {', '.join(_SCOPES)}")

    def config(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, "scope": self.scope, "include_classifier": self.include_classifier}

    @torch.no_grad()
    def plan(self, model: nn.Module, data: Any = None) -> PruningPlan:
        """Masks over the prunable weights of ``model`` (``data`` is ignored). ``model`` is not modified."""
        mods = prunable_modules(model, include_classifier=self.include_classifier)
        if not mods:
            raise ConfigError("the model has no prunable conv/linear weights")
        scores = {f"{n}.weight": l1_scores(effective_weight(m)) for n, m in mods.items()}
        if self.scope == "layer":
            masks = {n: smallest_mask(s, round(self.sparsity * s.numel())) for n, s in scores.items()}
        else:
            flat = torch.cat([s.flatten().cpu() for s in scores.values()])
            keep = smallest_mask(flat, round(self.sparsity * flat.numel()))
            masks, start = {}, 0
            for n, s in scores.items():
                masks[n] = keep[start : start + s.numel()].view(s.shape).to(s.device)
                start += s.numel()
        total = sum(m.numel() for m in masks.values())
        pruned = sum(int((~m).sum()) for m in masks.values())
        return PruningPlan(
            self.name, "weight", self.sparsity, self.config(), masks=masks, stats={"sparsity": pruned / total}
        )


PRUNERS.register("magnitude")(MagnitudePruner)
