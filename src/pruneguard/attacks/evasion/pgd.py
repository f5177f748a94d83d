"""Projected gradient descent (Madry et al. 2018), L-inf and L2, untargeted and targeted, with restarts."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.base import ATTACKS
from pruneguard.attacks.evasion._common import (
    Bound,
    as_bound,
    check_bounds,
    check_eps,
    check_inputs,
    check_norm,
    check_positive,
    check_positive_int,
    example_loss,
    rand_like,
    randn_like,
    success,
)
from pruneguard.attacks.evasion.projections import l2_norms, project_l2
from pruneguard.errors import ConfigError
from pruneguard.utils.modes import eval_mode, fast_layout, frozen

__all__ = ["PGD", "pgd"]


def check_pgd_params(
    eps: float,
    step_size: float,
    steps: int,
    norm: str,
    random_start: bool,
    restarts: int,
    clip_min: Bound = 0.0,
    clip_max: Bound = 1.0,
) -> None:
    """Validate PGD hyperparameters (shared by :class:`PGD` and :func:`pgd`)."""
    check_norm(norm)
    check_bounds(clip_min, clip_max)
    check_eps(eps, norm, clip_min, clip_max)
    check_positive(step_size, "step_size")
    check_positive_int(steps, "steps")
    check_positive_int(restarts, "restarts")
    if restarts > 1 and not random_start:
        raise ConfigError(
            f"restarts={restarts} with random_start=False repeats one run; accepted: restarts=1, or random_start=True"
        )


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "linf",
    random_start: bool = True,
    restarts: int = 1,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_min: Bound = 0.0,
    clip_max: Bound = 1.0,
    early_stop: bool = False,
) -> Tensor:
    """PGD on the cross-entropy loss; returns ``x_adv`` within ``eps`` of ``x`` and inside ``[clip_min, clip_max]``.

    Paper: https://arxiv.org/abs/1706.06083 . Threat model: white box, gradients of ``model`` w.r.t. the input.
    Untargeted PGD ascends the loss of ``y``; with ``target`` it descends the loss of ``target``. With
    ``restarts > 1`` each example keeps its first successful run, otherwise its highest-loss run; later
    restarts only attack the examples not yet fooled. ``early_stop=True`` keeps each example at the first iterate
    that fools the model and stops computing on it (as AutoAttack only attacks points still robust): the robust
    accuracy can only be lower (stronger) than without it, for less work. Leave it off where the examples are
    used for something else than scoring this model (adversarial training, transfer to other models).
    ``model`` is left with its training and requires_grad
    flags as they were; its parameters get no ``.grad``.

    Args:
        x: float batch ``(N, ...)`` inside ``[clip_min, clip_max]`` (images ``(N, C, H, W)`` in [0, 1]).
        y: ``(N,)`` true labels. target: ``(N,)`` target labels for a targeted attack.
        clip_min, clip_max: input box (floats or tensors broadcastable to ``x``), e.g. standardised features.

    Example:
        >>> x_adv = pgd(model, x, y, eps=8 / 255, step_size=2 / 255, steps=10, generator=torch.Generator())
    """
    check_pgd_params(eps, step_size, steps, norm, random_start, restarts, clip_min, clip_max)
    check_inputs(x, y, target, clip_min, clip_max)
    x = x.detach()
    labels = y if target is None else target
    lo_clip, hi_clip = (b.expand_as(x) if b.dim() > 0 else b for b in (as_bound(clip_min, x), as_bound(clip_max, x)))
    run = functools.partial(
        _run, model, eps=eps, step_size=step_size, steps=steps, norm=norm, generator=generator, early_stop=early_stop
    )
    with eval_mode(model), frozen(model), fast_layout(model), torch.enable_grad():
        x_adv = run(x, labels, target is not None, random_start, lo_clip, hi_clip)
        if restarts == 1:
            return x_adv
        with torch.no_grad():
            logits = model(x_adv)
        best_loss, done = example_loss(logits, y, target), success(logits, y, target)
        for _ in range(restarts - 1):
            todo = (~done).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            t = None if target is None else target[todo]
            cand = run(x[todo], labels[todo], t is not None, True, _rows(lo_clip, todo), _rows(hi_clip, todo))
            with torch.no_grad():
                logits = model(cand)
            loss, ok = example_loss(logits, y[todo], t), success(logits, y[todo], t)
            better = ok | (loss > best_loss[todo])
            idx = todo[better]
            x_adv[idx], best_loss[idx], done[idx] = cand[better], loss[better], ok[better]
    return x_adv


def _rows(bound: Tensor, index: Tensor) -> Tensor:
    """The rows ``index`` of a bound expanded to ``x``'s shape; a scalar bound is shared by all rows."""
    return bound[index] if bound.dim() > 0 else bound


def _run(
    model: nn.Module,
    x: Tensor,
    labels: Tensor,
    targeted: bool,
    random_start: bool,
    lo_clip: Tensor,
    hi_clip: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: str,
    generator: torch.Generator | None,
    early_stop: bool = False,
) -> Tensor:
    if norm == "linf":
        lo = torch.maximum(x - eps, lo_clip)
        hi = torch.minimum(x + eps, hi_clip)
        start = x + eps * (2 * rand_like(x, generator) - 1) if random_start else x
        start = torch.clamp(start, lo, hi)
        if early_stop:
            return _early_stopped(model, start, labels, targeted, steps, _linf_step(step_size, targeted, lo, hi))
        return _linf_steps(model, start, labels, targeted, step_size, steps, lo, hi)
    start = x + _l2_ball_sample(x, eps, generator) if random_start else x
    start = torch.clamp(start, lo_clip, hi_clip)
    if early_stop:
        step = _l2_step(x, eps, step_size, targeted, lo_clip, hi_clip)
        return _early_stopped(model, start, labels, targeted, steps, step)
    return _l2_steps(model, x, start, labels, targeted, eps, step_size, steps, lo_clip, hi_clip)


_Step = Callable[[Tensor, Tensor, Tensor], Tensor]  # (x_adv rows, their gradient, row indices) -> next x_adv rows


def _linf_step(step_size: float, targeted: bool, lo: Tensor, hi: Tensor) -> _Step:
    alpha = -step_size if targeted else step_size

    def step(x_adv: Tensor, grad: Tensor, rows: Tensor) -> Tensor:
        return torch.clamp(x_adv.add_(grad.sign_(), alpha=alpha), _rows(lo, rows), _rows(hi, rows))

    return step


def _l2_step(x: Tensor, eps: float, step_size: float, targeted: bool, lo_clip: Tensor, hi_clip: Tensor) -> _Step:
    alpha = -step_size if targeted else step_size

    def step(x_adv: Tensor, grad: Tensor, rows: Tensor) -> Tensor:
        x0 = x[rows]
        delta = project_l2(x_adv.add_(grad.div_(l2_norms(grad).clamp_min_(1e-12)).mul_(alpha)).sub_(x0), eps)
        return torch.clamp(x0 + delta, _rows(lo_clip, rows), _rows(hi_clip, rows))

    return step


def _early_stopped(model: nn.Module, x_adv: Tensor, labels: Tensor, targeted: bool, steps: int, step: _Step) -> Tensor:
    """PGD steps on the rows not yet fooled; a fooled row keeps the iterate that fooled it (eval-mode model, so
    rows are independent and dropping some does not change the others)."""
    out = x_adv.detach().clone()
    active = torch.arange(len(out), device=out.device)
    cur = out.clone()
    for _ in range(steps):
        cur.requires_grad_(True)
        logits = model(cur)
        pred = logits.argmax(1)
        fooled = pred == labels[active] if targeted else pred != labels[active]
        keep = ~fooled
        out[active[fooled]] = cur.detach()[fooled]
        if not bool(keep.any()):
            return out
        (grad,) = torch.autograd.grad(F.cross_entropy(logits[keep], labels[active[keep]], reduction="sum"), cur)
        active = active[keep]
        cur = step(cur.detach()[keep], grad[keep], active)
    out[active] = cur.detach()
    return out


def _linf_steps(
    model: nn.Module,
    x_adv: Tensor,
    labels: Tensor,
    targeted: bool,
    step_size: float,
    steps: int,
    lo: Tensor,
    hi: Tensor,
) -> Tensor:
    """The hot loop: one forward, one input-only backward and two element-wise ops per step."""
    alpha = -step_size if targeted else step_size
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.clamp(x_adv.detach().add_(grad.sign_(), alpha=alpha), lo, hi)
    return x_adv.detach()


def _l2_steps(
    model: nn.Module,
    x: Tensor,
    x_adv: Tensor,
    labels: Tensor,
    targeted: bool,
    eps: float,
    step_size: float,
    steps: int,
    lo_clip: Tensor,
    hi_clip: Tensor,
) -> Tensor:
    alpha = -step_size if targeted else step_size
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        step = grad.div_(l2_norms(grad).clamp_min_(1e-12)).mul_(alpha)
        delta = project_l2(x_adv.detach().add_(step).sub_(x), eps)
        # Clipping to the box moves each coordinate towards x (inside the box): the L2 norm only shrinks.
        x_adv = torch.clamp(x + delta, lo_clip, hi_clip)
    return x_adv.detach()


def _l2_ball_sample(x: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    """Uniform samples in the L2 ball of radius ``eps`` (Gaussian direction, radius ``eps * U^(1/d)``)."""
    direction = randn_like(x, generator)
    direction = direction / l2_norms(direction).clamp_min(1e-12)
    u = rand_like(x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)), generator)
    return direction * (eps * u.pow(1.0 / x[0].numel()))


@ATTACKS.register("pgd", kind="evasion")
@dataclass(frozen=True, slots=True)
class PGD:
    """PGD hyperparameters; calling the object runs :func:`pgd` on the given model.

    Example:
        >>> attack = PGD(eps=8 / 255, step_size=2 / 255, steps=10)
        >>> x_adv = attack(model, x, y, generator=torch.Generator().manual_seed(0))
    """

    name: ClassVar[str] = "pgd"
    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    norm: str = "linf"
    random_start: bool = True
    restarts: int = 1
    clip_min: float = 0.0
    clip_max: float = 1.0
    early_stop: bool = False

    def __post_init__(self) -> None:
        check_pgd_params(
            self.eps,
            self.step_size,
            self.steps,
            self.norm,
            self.random_start,
            self.restarts,
            self.clip_min,
            self.clip_max,
        )

    def __call__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return pgd(
            model,
            x,
            y,
            eps=self.eps,
            step_size=self.step_size,
            steps=self.steps,
            norm=self.norm,
            random_start=self.random_start,
            restarts=self.restarts,
            target=target,
            generator=generator,
            clip_min=self.clip_min,
            clip_max=self.clip_max,
            early_stop=self.early_stop,
        )
