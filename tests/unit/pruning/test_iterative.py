"""Iterative prune / fine-tune: schedules, masks during fine-tuning, collapse detection, resumption."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruneguard.errors import ConfigError
from pruneguard.pruning import (
    MagnitudePruner,
    linear_schedule,
    make_permanent_,
    prune_finetune,
    sparsity,
    step_schedule,
)

X = torch.rand(64, 6, generator=torch.Generator().manual_seed(1))
Y = (X[:, 0] + X[:, 1] > X[:, 2] + X[:, 3]).long()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))


def _finetune(model: nn.Module) -> None:
    """Three SGD steps; the batch order comes from torch's global RNG (restored on resume)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        idx = torch.randperm(64)[:32]
        loss = F.cross_entropy(model(X[idx]), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def _evaluate(model: nn.Module) -> dict[str, float]:
    with torch.no_grad():
        return {"clean_accuracy": float((model(X).argmax(1) == Y).float().mean())}


def _pruner(s: float) -> MagnitudePruner:
    return MagnitudePruner(sparsity=s)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_schedules() -> None:
    assert linear_schedule(0.8, 4) == [0.2, 0.4, 0.6, 0.8]
    assert linear_schedule() == [0.2, 0.4, 0.6, 0.8]
    assert step_schedule(0.5, 0.1) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert step_schedule(0.5, 0.2) == [0.2, 0.4, 0.5]
    with pytest.raises(ConfigError):
        linear_schedule(1.2, 4)
    with pytest.raises(ConfigError):
        step_schedule(0.5, 0.0)


def test_masks_stay_on_while_fine_tuning() -> None:
    model = _model()
    results = prune_finetune(model, _pruner, [0.3, 0.6], _finetune, _evaluate)
    assert [r.step for r in results] == [0, 1, 2]
    assert results[0].sparsity == 0.0 and not any(r.collapsed for r in results)
    for r in results[1:]:
        assert abs(r.achieved_sparsity - r.sparsity) <= 0.01  # measured after fine-tuning
    make_permanent_(model)
    assert abs(sparsity(model) - 0.6) <= 0.01


def test_collapse_stops_and_restores_the_last_good_model() -> None:
    model = _model()
    seen: list[dict[str, torch.Tensor]] = []

    def evaluate(m: nn.Module) -> dict[str, float]:
        seen.append(_weights(m))
        return {"clean_accuracy": 0.9 if sparsity(m) < 0.5 else 0.2}

    results = prune_finetune(model, _pruner, linear_schedule(0.8, 4), _finetune, evaluate, max_acc_drop=0.05)
    assert [r.collapsed for r in results] == [False, False, False, True]
    assert results[-1].reason is not None and "clean_accuracy" in results[-1].reason
    restored = model.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in seen[2].items())  # the step-2 model, masks included
    assert abs(sparsity(model) - 0.4) <= 0.01


def test_robust_key_collapse_and_marking_without_stopping() -> None:
    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"clean_accuracy": 1.0, "robust_accuracy": 0.5 - sparsity(m)}

    results = prune_finetune(_model(), _pruner, [0.2, 0.4], _finetune, evaluate, robust_key="robust_accuracy")
    assert len(results) == 2 and results[1].collapsed and "robust_accuracy" in (results[1].reason or "")
    results = prune_finetune(
        _model(),
        _pruner,
        [0.2, 0.4],
        _finetune,
        evaluate,
        robust_key="robust_accuracy",
        stop_on_collapse=False,
    )
    assert [r.collapsed for r in results] == [False, True, True]


def test_resume_after_interruption_is_bit_identical(tmp_path: Path) -> None:
    schedule = [0.2, 0.4, 0.6]
    torch.manual_seed(123)
    full = _model()
    torch.manual_seed(123)
    expected = prune_finetune(full, _pruner, schedule, _finetune, _evaluate, state_dir=tmp_path / "a")

    calls = {"n": 0}

    def crashing(model: nn.Module) -> None:
        calls["n"] += 1
        _finetune(model)
        if calls["n"] == 2:
            raise RuntimeError("killed during step 2")

    torch.manual_seed(123)
    broken = _model()
    torch.manual_seed(123)
    with pytest.raises(RuntimeError, match="killed"):
        prune_finetune(broken, _pruner, schedule, crashing, _evaluate, state_dir=tmp_path / "b")
    torch.manual_seed(999)  # a different global RNG state: resumption restores the saved one
    resumed_model = copy.deepcopy(_model())
    resumed = prune_finetune(
        resumed_model, _pruner, schedule, _finetune, _evaluate, state_dir=tmp_path / "b", resume=True
    )
    assert [r.metrics for r in resumed] == [r.metrics for r in expected]
    assert [r.achieved_sparsity for r in resumed] == [r.achieved_sparsity for r in expected]
    a, b = full.state_dict(), resumed_model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a finished run resumes to the same results without fine-tuning again
    again = prune_finetune(_model(), _pruner, schedule, crashing, _evaluate, state_dir=tmp_path / "b", resume=True)
    assert [r.metrics for r in again] == [r.metrics for r in expected] and calls["n"] == 2
    assert (tmp_path / "b" / "results.json").is_file()


def test_validation() -> None:
    with pytest.raises(ConfigError):
        prune_finetune(_model(), _pruner, [0.5, 0.3], _finetune, _evaluate)
    with pytest.raises(ConfigError):
        prune_finetune(_model(), _pruner, [0.5], _finetune, lambda m: {"acc": 1.0}, max_acc_drop=0.1)
