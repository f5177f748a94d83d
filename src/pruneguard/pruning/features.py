"""Input-feature pruning for tabular models: keep the most important features by zeroing the first linear
layer's input columns of all others (a weight-granularity plan, so it composes with magnitude pruning).

Importance is either the mean absolute input gradient of the loss in standardised units (``"gradient"``:
``|dL/dx_j| * std_j``, averaged over the data) or the L2 norm of the first layer's weight column
(``"weight"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.models.layers import Normalize
from pruneguard.pruning.base import PruningPlan, effective_weight, prunable_modules
from pruneguard.utils.modes import eval_mode, frozen

__all__ = ["IMPORTANCES", "first_linear", "feature_importance", "top_features", "FeatureMaskPruner"]

IMPORTANCES = ("gradient", "weight")


def first_linear(model: nn.Module) -> str:
    """The module name of the first prunable layer, which must be an ``nn.Linear`` reading the features."""
    mods = prunable_modules(model)
    name = next(iter(mods), None)
    if name is None or not isinstance(mods[name], nn.Linear):
        raise IncompatibleModelError("input-feature pruning needs a model whose first layer is nn.Linear (an MLP)")
    return name


def feature_importance(
    model: nn.Module, x: Tensor, y: Tensor | None = None, *, method: str = "gradient", batch_size: int = 512
) -> Tensor:
    """Per-feature importance ``(F,)`` of raw features ``x`` ``(N, F)`` (``y`` is needed for ``"gradient"``)."""
    if method not in IMPORTANCES:
        raise ConfigError(f"method={method!r} is not accepted; accepted: {', '.join(IMPORTANCES)}")
    layer = dict(model.named_modules())[first_linear(model)]
    if method == "weight":
        return effective_weight(layer).detach().norm(dim=0).cpu()
    if y is None:
        raise ConfigError("method='gradient' needs labels y")
    norm = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    std = cast(Tensor, norm.std).detach().cpu() if norm is not None else torch.ones(())
    total = torch.zeros(x[0].numel())
    with eval_mode(model), frozen(model), torch.enable_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].detach().float().clone().requires_grad_(True)
            loss = F.cross_entropy(model(xb), y[i : i + batch_size], reduction="sum")
            (grad,) = torch.autograd.grad(loss, xb)
            total += grad.abs().flatten(1).sum(0).cpu()
    return total / max(1, len(x)) * std


def top_features(importance: Tensor, keep: float) -> Tensor:
    """Bool ``(F,)``: ``True`` for the ``max(1, round(keep * F))`` most important features (ties by position)."""
    if not 0.0 < keep <= 1.0:
        raise ConfigError(f"keep={keep} is outside (0, 1]; it is the fraction of input features kept")
    k = max(1, round(keep * importance.numel()))
    order = torch.argsort(-importance.float(), stable=True)
    mask = torch.zeros(importance.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask


@dataclass(frozen=True)
class FeatureMaskPruner:
    """Wraps a weight pruner: its plan also zeroes the first linear layer's input columns of dropped features.

    Example:
        >>> keep = top_features(feature_importance(model, x, y), 0.5)
        >>> plan = FeatureMaskPruner(MagnitudePruner(sparsity=0.3), first_linear(model), tuple(keep.tolist()))
        ...     .plan(model)
    """

    name: ClassVar[str] = "feature_mask"
    inner: Any
    layer: str
    keep: tuple[bool, ...]

    def plan(self, model: nn.Module, data: Any = None) -> PruningPlan:
        plan: PruningPlan = self.inner.plan(model, data)
        if plan.granularity != "weight":
            raise ConfigError(f"input-feature pruning combines with weight plans, not {plan.granularity!r}")
        w = effective_weight(dict(model.named_modules())[self.layer])
        if w.shape[1] != len(self.keep):
            raise IncompatibleModelError(f"layer {self.layer!r} reads {w.shape[1]} features, not {len(self.keep)}")
        key = f"{self.layer}.weight"
        cols = torch.tensor(self.keep, dtype=torch.bool, device=w.device).view(1, -1).expand_as(w)
        plan.masks[key] = plan.masks.get(key, torch.ones_like(w, dtype=torch.bool)).to(w.device) & cols
        total = sum(m.numel() for m in plan.masks.values())
        plan.stats["sparsity"] = sum(int((~m).sum()) for m in plan.masks.values()) / max(1, total)
        plan.config["keep_features"] = [i for i, k in enumerate(self.keep) if k]
        return plan
