"""Fine-Pruning of an MLP's last hidden layer: dormant neurons first, within the score budget, input untouched."""

from __future__ import annotations

import pytest
import torch

from pruneguard.data.tensors import ArrayData
from pruneguard.defenses.tabular_fine_pruning import fine_pruning_mlp, last_hidden_linear
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.models.zoo import MLP


def _model_and_data() -> tuple[MLP, ArrayData]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    model = MLP(2, (5,), [0.0] * 5, [1.0] * 5, hidden=(12, 8)).eval()
    return model, ArrayData(x, y, 2)


def test_last_hidden_linear_and_its_norm() -> None:
    model, _ = _model_and_data()
    assert last_hidden_linear(model) == ("net.4", "net.5")
    with pytest.raises(IncompatibleModelError, match="hidden Linear"):
        last_hidden_linear(torch.nn.Sequential(torch.nn.Linear(3, 2)))


def test_prunes_within_budget_and_leaves_the_input_model_alone() -> None:
    model, data = _model_and_data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls: list[int] = []

    def score(m: torch.nn.Module) -> float:  # a budget that allows exactly three neurons
        calls.append(1)
        zeroed = int((m.net[5].weight == 0).sum())
        return 1.0 - 0.1 * max(0, zeroed - 3)

    defended, info = fine_pruning_mlp(model, data, score, max_drop=0.05, epochs=1)
    assert len(info["pruned"]) == 3 and info["layer"] == "net.4" and info["norm"] == "net.5"
    assert (defended.net[5].weight[info["pruned"]] == 0).all() and (defended.net[4].weight[info["pruned"]] == 0).all()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(calls) == 1 + 4  # the base score, then until the fourth neuron breaks the budget


def test_parameters_are_validated() -> None:
    model, data = _model_and_data()
    with pytest.raises(ConfigError, match="max_drop=1.5"):
        fine_pruning_mlp(model, data, lambda m: 1.0, max_drop=1.5)
    with pytest.raises(ConfigError, match="epochs=-1"):
        fine_pruning_mlp(model, data, lambda m: 1.0, epochs=-1)
