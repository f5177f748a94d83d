"""MagnitudePruner, PruningPlan serialisation and mask application."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.models import create_model
from pruneguard.pruning import (
    PRUNERS,
    MagnitudePruner,
    PruningPlan,
    apply_plan_,
    l1_scores,
    make_permanent_,
    sparsity,
)
from pruneguard.pruning.base import is_masked, layer_sparsity, prunable_modules


def _model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes=4, input_shape=(1, 8, 8), width=0.25, hidden=16)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("target", [0.3, 0.5, 0.9])
def test_plan_hits_target_sparsity(scope: str, target: float) -> None:
    model = _model()
    plan = MagnitudePruner(sparsity=target, scope=scope).plan(model)
    kept = sum(int(m.sum()) for m in plan.masks.values())
    total = sum(m.numel() for m in plan.masks.values())
    assert abs((1 - kept / total) - target) <= 0.01
    apply_plan_(model, plan)
    assert abs(sparsity(model) - target) <= 0.01
    if scope == "layer":
        assert all(abs(s - target) <= 0.05 for s in layer_sparsity(model).values())


def test_global_scope_prunes_the_smallest_weights() -> None:
    model = _model()
    plan = MagnitudePruner(sparsity=0.5).plan(model)
    weights = {f"{n}.weight": m.weight.detach().abs() for n, m in prunable_modules(model).items()}
    largest_pruned = max(float(weights[n][~m].max()) for n, m in plan.masks.items() if (~m).any())
    smallest_kept = min(float(weights[n][m].min()) for n, m in plan.masks.items() if m.any())
    assert largest_pruned <= smallest_kept


def test_exclude_classifier_leaves_it_dense() -> None:
    model = _model()
    plan = MagnitudePruner(sparsity=0.6, include_classifier=False).plan(model)
    assert "classifier.4.weight" not in plan.masks
    apply_plan_(model, plan)
    assert not is_masked(model.classifier[4])
    assert abs(sparsity(model, include_classifier=False) - 0.6) <= 0.01


def test_plan_round_trips_through_json() -> None:
    plan = MagnitudePruner(sparsity=0.4, scope="layer").plan(_model())
    text = json.dumps(plan.to_dict())
    back = PruningPlan.from_dict(json.loads(text))
    assert back.method == "magnitude" and back.granularity == "weight" and back.target_sparsity == 0.4
    assert back.config == plan.config
    assert set(back.masks) == set(plan.masks)
    for name, mask in plan.masks.items():
        assert back.masks[name].dtype == torch.bool
        assert torch.equal(back.masks[name], mask)
    assert len(text) < sum(m.numel() for m in plan.masks.values())  # packed bits, not one char per weight


def test_plan_does_not_mutate_the_model() -> None:
    model = _model()
    before = _state(model)
    MagnitudePruner(sparsity=0.7).plan(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(is_masked(m) for m in model.modules())


def test_masked_model_runs_and_pruned_weights_stay_zero_while_training() -> None:
    model = _model()
    apply_plan_(model, MagnitudePruner(sparsity=0.5).plan(model))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, weight_decay=1e-2)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 4, (8,))
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model(x).shape == (8, 4)
    assert sparsity(model) >= 0.5 - 0.01


def test_make_permanent_bakes_zeros_and_removes_hooks() -> None:
    model = _model()
    apply_plan_(model, MagnitudePruner(sparsity=0.5).plan(model))
    masked = {n: m.weight.detach().clone() for n, m in prunable_modules(model).items()}
    make_permanent_(model)
    for name, m in prunable_modules(model).items():
        assert isinstance(m.weight, nn.Parameter)
        assert not hasattr(m, "weight_orig") and not hasattr(m, "weight_mask")
        assert len(m._forward_pre_hooks) == 0
        assert torch.equal(m.weight.detach(), masked[name])
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())
    assert abs(sparsity(model) - 0.5) <= 0.01
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 4)


def test_reapplying_combines_masks_and_replanning_extends_them() -> None:
    model = _model()
    first = MagnitudePruner(sparsity=0.3).plan(model)
    apply_plan_(model, first)
    second = MagnitudePruner(sparsity=0.6).plan(model)  # sees the masked weights
    for name, mask in first.masks.items():
        assert not (second.masks[name] & ~mask).any()  # every pruned weight stays pruned
    apply_plan_(model, second)
    assert abs(sparsity(model) - 0.6) <= 0.01


def test_apply_plan_rejects_a_plan_for_another_model() -> None:
    plan = MagnitudePruner(sparsity=0.5).plan(_model())
    other = create_model("mlp", num_classes=4, input_shape=(10,))
    with pytest.raises(IncompatibleModelError):
        apply_plan_(other, plan)


def test_registry_scores_and_validation() -> None:
    pruner = PRUNERS.create("magnitude", sparsity=0.2, scope="layer")
    assert isinstance(pruner, MagnitudePruner) and pruner.name == "magnitude"
    w = torch.tensor([[-2.0, 1.0], [0.5, -0.1]])
    assert torch.equal(l1_scores(w), w.abs())
    with pytest.raises(ConfigError):
        MagnitudePruner(sparsity=1.0)
    with pytest.raises(ConfigError):
        MagnitudePruner(scope="everywhere")
