"""Input-feature pruning: importance, top-k selection and the feature-mask pruner combined with magnitude."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.models import create_model
from pruneguard.pruning import MagnitudePruner, apply_plan_, make_permanent_
from pruneguard.pruning.features import FeatureMaskPruner, feature_importance, first_linear, top_features


def _mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=2, input_shape=(6,), mean=(0.0,), std=(1.0,), hidden=(8,)).eval()
    with torch.no_grad():
        model.net[1].weight[:, 3:] *= 0.01  # features 3..5 barely reach the hidden layer
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    return model, x, (x[:, 0] > 0).long()


def test_importance_ranks_features_by_gradient_and_weight() -> None:
    model, x, y = _mlp()
    for method in ("gradient", "weight"):
        imp = feature_importance(model, x, y, method=method)
        assert imp.shape == (6,) and bool((imp >= 0).all())
        assert float(imp[:3].min()) > float(imp[3:].max())
    with pytest.raises(ConfigError, match="method"):
        feature_importance(model, x, y, method="shap")
    with pytest.raises(IncompatibleModelError, match="nn.Linear"):
        first_linear(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)))


def test_top_features_keeps_the_most_important() -> None:
    keep = top_features(torch.tensor([0.1, 0.5, 0.3, 0.9]), 0.5)
    assert keep.tolist() == [False, True, False, True]
    assert top_features(torch.tensor([1.0, 2.0]), 0.01).tolist() == [False, True]
    with pytest.raises(ConfigError, match="keep"):
        top_features(torch.ones(3), 0.0)


def test_feature_mask_pruner_zeroes_dropped_columns_on_top_of_magnitude() -> None:
    model, x, y = _mlp()
    keep = top_features(feature_importance(model, x, y), 0.5)
    pruner = FeatureMaskPruner(MagnitudePruner(sparsity=0.2), first_linear(model), tuple(keep.tolist()))
    plan = pruner.plan(model)
    assert plan.config["keep_features"] == [0, 1, 2] and plan.stats["sparsity"] >= 0.2
    apply_plan_(model, plan)
    make_permanent_(model)
    w = model.net[1].weight
    assert bool((w[:, 3:] == 0).all()) and bool((w[:, :3] != 0).any())
    with torch.no_grad():
        x2 = x.clone()
        x2[:, 3:] = 100.0  # dropped features no longer matter
        assert torch.equal(model(x).argmax(1), model(x2).argmax(1))
    with pytest.raises(IncompatibleModelError, match="reads 6 features"):
        FeatureMaskPruner(MagnitudePruner(sparsity=0.2), "net.1", (True,)).plan(model)
