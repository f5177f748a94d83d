"""Iterative prune / fine-tune (Han et al. 2015, https://arxiv.org/abs/1506.02626) by composition.

:func:`prune_finetune` takes any weight-granularity pruner (through a factory ``sparsity -> Pruner``), a
schedule of increasing sparsities, a ``finetune`` callable and an ``evaluate`` callable. At each step it plans
at the step's sparsity, installs the masks (they stay on while fine-tuning, so pruned weights stay zero),
fine-tunes and evaluates. It stops when the model collapses: clean accuracy more than ``max_acc_drop`` below
the dense baseline, or the ``robust_key`` metric below the dense model's. The model is then restored to the
last good step.

With ``state_dir`` the model state, the results and torch's global RNG state are written atomically after each
step; ``resume=True`` continues after an interruption and ends with the same weights and metrics as an
uninterrupted run, provided ``finetune``/``evaluate`` are deterministic given the model (e.g. ``train_model``
with a fixed ``TrainConfig.seed``) or only draw from torch's global RNG.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from pruneguard.errors import ConfigError
from pruneguard.metrics.robustness import collapse_reason
from pruneguard.pruning.base import (
    Pruner,
    apply_plan_,
    is_masked,
    prunable_modules,
    refresh_masked_weights_,
    sparsity,
)
from pruneguard.utils.io import atomic_write, atomic_write_json

__all__ = ["PruneStepResult", "linear_schedule", "step_schedule", "prune_finetune"]

logger = logging.getLogger(__name__)
_STATE = "prune_finetune.pt"
_RESULTS = "results.json"


@dataclass
class PruneStepResult:
    """One step of the schedule. Step 0 is the dense baseline (``sparsity`` 0, never collapsed).

    ``metrics`` are those of the model after this step's fine-tuning; for a collapsed step they are the
    collapsed model's, and the model itself was restored to the previous step.
    """

    step: int
    sparsity: float
    achieved_sparsity: float
    metrics: dict[str, float] = field(default_factory=dict)
    collapsed: bool = False
    reason: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PruneStepResult:
        return cls(**raw)


def linear_schedule(final: float = 0.8, steps: int = 4) -> list[float]:
    """``steps`` evenly spaced sparsities ending at ``final``.

    ``linear_schedule(0.8, 4) == [0.2, 0.4, 0.6, 0.8]``.
    """
    if not 0.0 < final < 1.0:
        raise ConfigError(f"final={final} is outside (0, 1)")
    if steps < 1:
        raise ConfigError(f"steps={steps} must be an integer >= 1")
    return [round(final * (i + 1) / steps, 10) for i in range(steps)]


def step_schedule(target: float, step: float) -> list[float]:
    """Sparsities ``step, 2*step, ...`` up to ``target`` (which is always the last entry).

    ``step_schedule(0.5, 0.1) == [0.1, 0.2, 0.3, 0.4, 0.5]``; ``step_schedule(0.5, 0.2) == [0.2, 0.4, 0.5]``.
    """
    if not 0.0 < target < 1.0:
        raise ConfigError(f"target={target} is outside (0, 1)")
    if not 0.0 < step <= target:
        raise ConfigError(f"step={step} is outside (0, target={target}]")
    n = math.floor(target / step + 1e-9)
    out = [round(step * (i + 1), 10) for i in range(n)]
    if not out or target - out[-1] > 1e-9:
        out.append(round(target, 10))
    return out


def _ensure_masks_(model: nn.Module) -> None:
    """All-ones masks on every conv/linear weight, so the state dict keeps one structure across steps."""
    for m in prunable_modules(model).values():
        if not is_masked(m):
            prune.identity(m, "weight")


@torch.no_grad()
def _load_state_(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    model.load_state_dict(state)
    refresh_masked_weights_(model)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _validate(schedule: Sequence[float], max_acc_drop: float | None) -> list[float]:
    sched = [float(s) for s in schedule]
    if not sched:
        raise ConfigError("schedule=[] is empty; accepted: increasing sparsities in [0, 1)")
    if any(not 0.0 <= s < 1.0 for s in sched) or any(b < a for a, b in zip(sched, sched[1:], strict=False)):
        raise ConfigError(f"schedule={sched} is not accepted; accepted: non-decreasing sparsities in [0, 1)")
    if max_acc_drop is not None and not 0.0 <= max_acc_drop < 1.0:
        raise ConfigError(f"max_acc_drop={max_acc_drop} is outside [0, 1)")
    return sched


def _save(
    path: Path | None, model: nn.Module, results: list[PruneStepResult], schedule: list[float], done: bool
) -> None:
    if path is None:
        return
    state = {
        "model": model.state_dict(),
        "results": [r.to_dict() for r in results],
        "schedule": schedule,
        "rng": torch.get_rng_state(),
        "done": done,
    }
    with atomic_write(path / _STATE, "wb") as fh:
        torch.save(state, fh)
    atomic_write_json(path / _RESULTS, {"schedule": schedule, "done": done, "results": [r.to_dict() for r in results]})


def _try_resume(path: Path | None, model: nn.Module, schedule: list[float]) -> tuple[list[PruneStepResult], bool]:
    if path is None or not (path / _STATE).is_file():
        return [], False
    state = torch.load(path / _STATE, map_location="cpu", weights_only=True)
    if state.get("schedule") != schedule:
        logger.warning("ignoring %s: it was made with schedule %s", path / _STATE, state.get("schedule"))
        return [], False
    _load_state_(model, state["model"])
    torch.set_rng_state(state["rng"])
    results = [PruneStepResult.from_dict(r) for r in state["results"]]
    logger.info("resuming prune/fine-tune after step %d from %s", results[-1].step, path)
    return results, bool(state["done"])


def prune_finetune(
    model: nn.Module,
    pruner_factory: Callable[[float], Pruner],
    schedule: Sequence[float],
    finetune: Callable[[nn.Module], None],
    evaluate: Callable[[nn.Module], dict[str, float]],
    *,
    max_acc_drop: float | None = None,
    acc_key: str = "clean_accuracy",
    robust_key: str | None = None,
    stop_on_collapse: bool = True,
    state_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> list[PruneStepResult]:
    """Prune ``model`` step by step along ``schedule``, fine-tuning after each; mutates ``model`` in place.

    Args:
        model: the dense (or already masked) model; it ends masked (``weight_orig``/``weight_mask``) at the
            last good step. Call ``make_permanent_(model)`` to bake the masks in.
        pruner_factory: ``sparsity -> Pruner`` making weight-granularity plans, e.g.
            ``lambda s: MagnitudePruner(sparsity=s)``. Plans see the masked weights, so masks only grow.
        schedule: non-decreasing target sparsities, e.g. ``linear_schedule(0.8, 4)``.
        finetune: trains the model in place (masks stay on, pruned weights stay zero).
        evaluate: returns metrics; must contain ``acc_key`` (and ``robust_key`` when given).
        max_acc_drop: collapse when ``acc_key`` falls more than this below the dense baseline.
        robust_key: collapse when this metric falls below the dense model's.
        stop_on_collapse: stop at a collapse and restore the last good model; otherwise only mark it.
        state_dir: where the state is written (atomically) after every step.
        resume: continue from ``state_dir`` if it holds the state of a run with the same schedule.

    Returns:
        The dense baseline (step 0) and one result per step run.

    Example:
        >>> results = prune_finetune(model, lambda s: MagnitudePruner(sparsity=s), linear_schedule(0.8, 4),
        ...                          finetune=lambda m: train_model(m, clean, TrainConfig(epochs=1)),
        ...                          evaluate=lambda m: {"clean_accuracy": acc(m)}, max_acc_drop=0.05)
    """
    sched = _validate(schedule, max_acc_drop)
    path = Path(state_dir) if state_dir is not None else None
    _ensure_masks_(model)
    results, done = _try_resume(path, model, sched) if resume else ([], False)
    if not results:
        t0 = time.perf_counter()
        base = dict(evaluate(model))
        results = [PruneStepResult(0, 0.0, sparsity(model), base, seconds=time.perf_counter() - t0)]
        _save(path, model, results, sched, False)
    needed = ([acc_key] if max_acc_drop is not None else []) + ([robust_key] if robust_key is not None else [])
    for key in needed:
        if key not in results[0].metrics:
            raise ConfigError(f"evaluate() returned no {key!r}; it returned {sorted(results[0].metrics)}")
    if done:
        return results
    base = results[0].metrics
    last_good = _snapshot(model)
    for i in range(results[-1].step, len(sched)):
        t0 = time.perf_counter()
        plan = pruner_factory(sched[i]).plan(model)
        if plan.granularity != "weight":
            raise ConfigError(f"prune_finetune needs weight masks; the pruner made a {plan.granularity!r} plan")
        apply_plan_(model, plan)
        finetune(model)
        metrics = dict(evaluate(model))
        reason = collapse_reason(metrics, base, max_acc_drop=max_acc_drop, acc_key=acc_key, robust_key=robust_key)
        achieved = sparsity(model, include_classifier=bool(plan.config.get("include_classifier", True)))
        results.append(
            PruneStepResult(
                i + 1,
                sched[i],
                achieved,
                metrics,
                reason is not None,
                reason,
                time.perf_counter() - t0,
            )
        )
        if reason is not None:
            logger.warning("step %d (sparsity %.3f) collapsed: %s", i + 1, sched[i], reason)
            if stop_on_collapse:
                _load_state_(model, last_good)
                _save(path, model, results, sched, True)
                return results
        last_good = _snapshot(model)
        _save(path, model, results, sched, i + 1 == len(sched))
    return results
