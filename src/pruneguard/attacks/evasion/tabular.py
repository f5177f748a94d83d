"""Constrained tabular evasion: move positive rows (fraud) away from the positive class, never the reverse.

Threat model: the attacker submits rows of the positive class (fraudulent transactions) and edits them so that
the model stops flagging them. Rows of other classes are returned unchanged: a fraudster has no reason to make a
legitimate transaction look fraudulent. The edit is an L-inf PGD in standardised units (``eps`` standard
deviations of each feature, read from the model's ``Normalize`` layer), inside the constraints
(:class:`~pruneguard.attacks.evasion.constraints.TabularConstraints`: immutable columns, bounds, integer and
one-hot columns) and, when given, the data's per-feature range.

Inputs are raw feature rows ``(N, F)`` (the model standardises them itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.base import ATTACKS
from pruneguard.attacks.evasion.constraints import TabularConstraints, project_continuous, project_discrete
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.models.layers import Normalize
from pruneguard.utils.modes import eval_mode, frozen

__all__ = ["PositiveEvasion", "positive_evasion", "feature_std"]


def feature_std(model: nn.Module, num_features: int) -> Tensor:
    """Per-feature standard deviation ``(F,)`` from the model's ``Normalize`` layer."""
    norm = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    if norm is None:
        raise IncompatibleModelError("tabular evasion needs a model with a Normalize layer (its feature std)")
    return cast(Tensor, norm.std).detach().float().flatten().expand(num_features)


def _box(
    x: Tensor, eps: float, std: Tensor, c: TabularConstraints, data_range: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, Tensor]:
    """Per-row ``(lo, hi)``: the eps-ball, the constraint bounds and the data range; ``x`` always stays inside."""
    lo, hi = x - eps * std, x + eps * std
    clo, chi = (b.to(x.device).view(1, -1) for b in c.bounds())
    lo, hi = torch.maximum(lo, clo), torch.minimum(hi, chi)
    if data_range is not None:
        lo = torch.maximum(lo, data_range[0].to(x.device).view(1, -1))
        hi = torch.minimum(hi, data_range[1].to(x.device).view(1, -1))
    return torch.minimum(lo, x), torch.maximum(hi, x)


def positive_evasion(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    positive: int,
    eps: float,
    steps: int = 20,
    step_size: float | None = None,
    constraints: TabularConstraints | None = None,
    data_range: tuple[Tensor, Tensor] | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Attack the rows of ``x`` ``(N, F)`` labelled ``positive``; return ``x_adv`` (other rows unchanged).

    Each step raises the cross-entropy of the positive class by ``step_size`` standard deviations per feature
    (default ``2.5 * eps / steps``) and projects onto the box (ball, bounds, data range, immutable columns);
    integer and one-hot columns are made discrete at the end. ``model`` is restored to its modes.
    """
    if x.dim() != 2 or y.shape != (x.shape[0],):
        raise ConfigError(f"x {tuple(x.shape)} / y {tuple(y.shape)} are not accepted; accepted: (N, F) and (N,)")
    if not eps > 0 or steps < 1:
        raise ConfigError(f"eps={eps}, steps={steps} are not accepted; accepted: eps > 0, steps >= 1")
    c = constraints or TabularConstraints(num_features=x.shape[1])
    if c.num_features != x.shape[1]:
        raise ConfigError(f"the constraints cover {c.num_features} features but x has {x.shape[1]}")
    out = x.detach().clone()
    rows = torch.nonzero(y == positive).flatten()
    if rows.numel() == 0:
        return out
    xp = x[rows].detach().float()
    std = feature_std(model, x.shape[1]).to(x.device).view(1, -1)
    lo, hi = _box(xp, eps, std, c, data_range)
    mutable = c.mutable().to(x.device)
    size = 2.5 * eps / steps if step_size is None else step_size
    label = torch.full((len(rows),), positive, dtype=torch.long, device=x.device)
    x_adv = xp.clone()
    if random_start:
        noise = torch.rand(xp.shape, generator=generator).to(x.device) * 2 - 1
        x_adv = project_continuous(xp + noise * eps * std, xp, lo, hi, mutable)
    with eval_mode(model), frozen(model), torch.enable_grad():
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), label)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = project_continuous(x_adv.detach() + size * std * grad.sign(), xp, lo, hi, mutable)
    out[rows] = project_discrete(x_adv.detach(), xp, lo, hi, c).to(out.dtype)
    return out


@ATTACKS.register("positive_evasion", kind="tabular_evasion")
@dataclass(frozen=True, slots=True)
class PositiveEvasion:
    """Constrained L-inf PGD on the positive rows only (see the module docstring for the threat model).

    Example:
        >>> attack = PositiveEvasion(positive=1, eps=0.5, constraints=load_constraints("c.yaml", names))
        >>> x_adv = attack(model, x, y, generator=torch.Generator().manual_seed(0))
    """

    name: ClassVar[str] = "positive_evasion"
    positive: int = 1
    eps: float = 0.1
    steps: int = 20
    constraints: TabularConstraints | None = None
    data_range: tuple[Tensor, Tensor] | None = field(default=None, compare=False)
    random_start: bool = True

    def __post_init__(self) -> None:
        if self.positive < 0:
            raise ConfigError(f"positive={self.positive} is not accepted; accepted: a class label >= 0")
        if not self.eps > 0:
            raise ConfigError(f"eps={self.eps} is not accepted; accepted: > 0 (standard deviations)")
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps} is not accepted; accepted: an integer >= 1")

    def __call__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return positive_evasion(
            model,
            x,
            y,
            positive=self.positive,
            eps=self.eps,
            steps=self.steps,
            constraints=self.constraints,
            data_range=self.data_range,
            random_start=self.random_start,
            generator=generator,
        )
