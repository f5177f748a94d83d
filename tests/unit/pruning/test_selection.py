from __future__ import annotations

import pytest
import torch
from torch import nn

from pruneguard.errors import ConfigError
from pruneguard.pruning import (
    auto_count,
    curve_counts,
    divergence_count,
    find_neuron_groups,
    prune_order,
    pruning_curve,
    select_by_threshold,
    select_smallest,
)


def test_threshold_count_and_order() -> None:
    masks = torch.tensor([0.9, 0.1, 0.2, 0.0, 0.5])
    assert prune_order(masks).tolist() == [3, 1, 2, 4, 0]
    assert select_by_threshold(masks, 0.2).tolist() == [3, 1, 2]  # <= threshold, as the reference
    assert select_smallest(masks, 2).tolist() == [3, 1]
    with pytest.raises(ConfigError, match="threshold=.* is outside"):
        select_by_threshold(masks, 1.5)
    with pytest.raises(ConfigError, match="count=.* is outside"):
        select_smallest(masks, 6)


def test_auto_count_stops_at_first_violation() -> None:
    curve = [
        {"pruned": 0, "clean_accuracy": 0.90},
        {"pruned": 5, "clean_accuracy": 0.895},
        {"pruned": 10, "clean_accuracy": 0.875},
        {"pruned": 15, "clean_accuracy": 0.89},
    ]
    assert auto_count(curve, 0.02) == 5  # the 0.025 drop at 10 stops the search; 15 is not reached
    assert auto_count(curve, 0.03) == 15
    assert auto_count(curve, 0.0) == 0


def test_curve_counts_small_and_large() -> None:
    assert curve_counts(torch.rand(50)) == list(range(46))
    big = curve_counts(torch.rand(5000), max_points=120)
    assert big[0] == 0 and len(big) <= 140 and big == sorted(set(big)) and big[-1] == 4500


def test_pruning_curve_counts_and_leaves_model_intact() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)).eval()
    groups = find_neuron_groups(model, torch.rand(2, 4))
    masks = torch.linspace(0, 1, 6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    zeros = lambda m: float((m[1].weight == 0).sum())  # noqa: E731
    rows = pruning_curve(model, groups, masks, {"zeros": zeros}, [0, 2, 4])
    assert [r["zeros"] for r in rows] == [0.0, 2.0, 4.0]
    assert [r["pruned"] for r in rows] == [0, 2, 4]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_pruning_curve_stops_after_the_clean_accuracy_collapses() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)).eval()
    groups = find_neuron_groups(model, torch.rand(2, 4))
    # a fake accuracy that falls 0.1 per pruned neuron
    acc = lambda m: 1.0 - 0.1 * float((m[1].weight == 0).sum())  # noqa: E731
    rows = pruning_curve(model, groups, torch.linspace(0, 1, 6), {"acc": acc}, range(7), stop_drop=0.25)
    assert [r["pruned"] for r in rows] == [0, 1, 2, 3]  # 3 is the first point beyond the drop; then it stops
    full = pruning_curve(model, groups, torch.linspace(0, 1, 6), {"acc": acc}, range(7))
    assert len(full) == 7


def test_ties_follow_the_tiebreak_then_the_layer_order() -> None:
    masks = torch.tensor([0.0, 0.5, 0.0, 0.0, 0.1])
    assert prune_order(masks).tolist() == [0, 2, 3, 4, 1]
    tie = torch.tensor([0.3, 0.9, 0.1, 0.3, 0.0])  # only the order within equal masks may change
    assert prune_order(masks, tie).tolist() == [2, 0, 3, 4, 1]
    assert select_by_threshold(masks, 0.0, tie).tolist() == [2, 0, 3]
    assert select_smallest(masks, 2, tie).tolist() == [2, 0]
    with pytest.raises(ValueError, match="tiebreak"):
        prune_order(masks, torch.zeros(3))


def test_divergence_count_stops_at_the_first_count_over_the_limit() -> None:
    kls = [0.0, 0.005, 0.012, 0.03, 0.01, 0.2]
    curve = [{"pruned": 2 * i, "clean_accuracy": 0.9, "kl": v} for i, v in enumerate(kls)]
    assert divergence_count(curve, 0.02) == 4  # 0.03 at 6 stops the search; 8 (0.01) is not reached
    assert divergence_count(curve, 0.05) == 8
    assert divergence_count(curve, 0.0) == 0
    with pytest.raises(ConfigError, match="max_kl"):
        divergence_count(curve, -0.1)
