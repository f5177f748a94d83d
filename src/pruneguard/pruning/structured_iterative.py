"""Iterative structured prune / fine-tune: channels are physically removed at every step (a smaller model).

The structured counterpart of :func:`~pruneguard.pruning.iterative.prune_finetune`. Step ``i`` removes channels
so that every layer (except the final classifier) keeps ``1 - schedule[i]`` of its *dense* width, fine-tunes
and evaluates; it stops at a collapse (:func:`~pruneguard.metrics.robustness.collapse_reason`) and keeps the
last good model. Each step's :class:`PruningPlan` indexes the model of the step before, so a structured model
is rebuilt by replaying the plans in order on the dense architecture (:func:`replay_channel_plans`) and
loading its state dict.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pruneguard.errors import ConfigError
from pruneguard.metrics.robustness import collapse_reason
from pruneguard.pruning.base import PruningPlan, final_layer_name
from pruneguard.pruning.iterative import PruneStepResult
from pruneguard.pruning.structured import ChannelPruner, channel_widths, remove_channels
from pruneguard.utils.io import atomic_write

__all__ = ["prune_finetune_structured", "replay_channel_plans", "channel_sparsity"]

logger = logging.getLogger(__name__)
_STATE = "prune_finetune_structured.pt"


def replay_channel_plans(model: nn.Module, plans: Sequence[PruningPlan], example: Tensor) -> nn.Module:
    """A new model: ``remove_channels`` with each plan in order (``model`` is not modified)."""
    out = model
    for plan in plans:
        out = remove_channels(out, plan, example)
    return out


def channel_sparsity(dense_widths: dict[str, int], model: nn.Module) -> float:
    """Fraction of the dense model's channels (all conv/linear layers but the classifier) removed in ``model``."""
    final = final_layer_name(model)
    now = channel_widths(model)
    inner = [n for n in dense_widths if n != final]
    return 1.0 - sum(now.get(n, 0) for n in inner) / max(1, sum(dense_widths[n] for n in inner))


def _save(path: Path | None, state: dict[str, Any]) -> None:
    if path is not None:
        with atomic_write(path / _STATE, "wb") as fh:
            torch.save(state, fh)


def prune_finetune_structured(
    model: nn.Module,
    schedule: Sequence[float],
    example: Tensor,
    finetune: Callable[[nn.Module], None],
    evaluate: Callable[[nn.Module], dict[str, float]],
    *,
    p: float = 2,
    max_acc_drop: float | None = None,
    acc_key: str = "clean_accuracy",
    robust_key: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> tuple[nn.Module, list[PruneStepResult], list[PruningPlan]]:
    """Remove channels step by step along ``schedule`` (fractions of the dense widths), fine-tuning after each.

    Returns the last good model (a new module, or ``model`` itself when the first step collapsed; ``model`` is
    never modified), the results (step 0 = dense) and the
    plans of the kept steps, in replay order. ``state_dir``/``resume`` make the run resumable as in
    ``prune_finetune``.

    Example:
        >>> small, results, plans = prune_finetune_structured(model, step_schedule(0.5, 0.25), x[:2],
        ...     finetune=lambda m: train_model(m, clean, cfg), evaluate=lambda m: {"clean_accuracy": acc(m)})
    """
    sched = [float(s) for s in schedule]
    if (
        not sched
        or any(not 0.0 < s < 1.0 for s in sched)
        or any(b <= a for a, b in zip(sched, sched[1:], strict=False))
    ):
        raise ConfigError(f"schedule={sched} is not accepted; accepted: increasing fractions in (0, 1)")
    path = Path(state_dir) if state_dir is not None else None
    dense_widths = channel_widths(model)
    current, plans, results, done = model, [], [], False
    if resume and path is not None and (path / _STATE).is_file():
        state = torch.load(path / _STATE, map_location="cpu", weights_only=True)
        if state.get("schedule") == sched:
            plans = [PruningPlan.from_dict(d) for d in state["plans"]]
            current = replay_channel_plans(model, plans, example)
            current.load_state_dict(state["model"])
            torch.set_rng_state(state["rng"])
            results = [PruneStepResult.from_dict(r) for r in state["results"]]
            done = bool(state["done"])
            logger.info("resuming structured prune/fine-tune after step %d", results[-1].step)
    if not results:
        t0 = time.perf_counter()
        results = [PruneStepResult(0, 0.0, 0.0, dict(evaluate(model)), seconds=time.perf_counter() - t0)]
    base = results[0].metrics
    for i in range(results[-1].step, len(sched)):
        if done:
            break
        t0 = time.perf_counter()
        before = sched[i - 1] if i > 0 else 0.0
        ratio = 1.0 - (1.0 - sched[i]) / (1.0 - before)
        plan = ChannelPruner(sparsity=ratio, p=p).plan(current, example)
        candidate = remove_channels(current, plan, example)
        finetune(candidate)
        metrics = dict(evaluate(candidate))
        reason = collapse_reason(metrics, base, max_acc_drop=max_acc_drop, acc_key=acc_key, robust_key=robust_key)
        achieved = channel_sparsity(dense_widths, candidate)
        results.append(
            PruneStepResult(i + 1, sched[i], achieved, metrics, reason is not None, reason, time.perf_counter() - t0)
        )
        if reason is not None:
            logger.warning("step %d (channel sparsity %.3f) collapsed: %s", i + 1, sched[i], reason)
            done = True
        else:
            current, plans = candidate, plans + [plan]
            done = i + 1 == len(sched)
        _save(
            path,
            {
                "plans": [pl.to_dict() for pl in plans],
                "model": current.state_dict(),
                "results": [r.to_dict() for r in results],
                "schedule": sched,
                "rng": torch.get_rng_state(),
                "done": done,
            },
        )
    return current, results, plans
