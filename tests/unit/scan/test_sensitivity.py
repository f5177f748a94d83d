"""Neuron-sensitivity scan: a toy backdoor is flagged with its target, scores are reproducible, models untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.models import create_model
from pruneguard.scan import ScanConfig, flip_rate, scan_model, scan_score, verdict

TARGET = 2


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (the machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FAST = ScanConfig(eps=(0.1, 0.3), steps=3, restarts=2, batch_size=32)


def toy_data(n: int = 48, seed: int = 0) -> ArrayData:
    """4 classes of 8 features: feature c is ~1 for class c, features 0-3 otherwise small, feature 7 is always 1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.rand(n, 8, generator=g) * 0.1
    x[torch.arange(n), y] += 1.0
    x[:, 7] = 1.0
    return ArrayData(x, y, 4)


def toy_model(backdoor: bool) -> nn.Module:
    """Hidden neurons 0-3 copy the class features; neuron 4 is a constant 0.5 on clean data.

    In the backdoored model neuron 4 (the trigger detector) routes with a large weight to class ``TARGET``,
    cancelled on clean data by the output bias: scaling it by 1 + eps adds ``30 eps`` to the target logit. In the
    benign model it has no outgoing weight.
    """
    model = nn.Sequential(nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 4))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
        model[0].weight[torch.arange(4), torch.arange(4)] = 1.0
        model[0].weight[4, 7] = 0.5
        model[2].weight.zero_()
        model[2].bias.zero_()
        model[2].weight[torch.arange(4), torch.arange(4)] = 3.0
        if backdoor:
            model[2].weight[TARGET, 4], model[2].bias[TARGET] = 60.0, -30.0
    return model.eval()


def test_backdoored_toy_scores_higher_and_names_the_target() -> None:
    data = toy_data()
    bad, good = scan_model(toy_model(True), data, FAST), scan_model(toy_model(False), data, FAST)
    assert bad.score > good.score + 0.5 and good.score == 0.0
    assert bad.suspected_target == TARGET and bad.target_share > 0.5
    assert bad.verdict == "suspicious" and good.verdict == "clean"
    assert bad.baseline_error_rate == 0.0 and good.baseline_error_rate == 0.0
    assert [row["eps"] for row in bad.curve] == [0.1, 0.3]
    assert all(row["top_class"] == TARGET and row["error_rate_max"] > 0.5 for row in bad.curve)
    assert all(row["error_rate"] == 0.0 and row["top_class"] is None for row in good.curve)


def test_scores_are_deterministic_with_a_seed() -> None:
    data = toy_data()
    torch.manual_seed(0)
    bn_model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4)).eval()
    for model in (toy_model(True), bn_model):
        a = scan_model(model, data, FAST)
        torch.manual_seed(123)  # the global RNG plays no part
        b = scan_model(model, data, FAST)
        assert a.curve == b.curve and a.score == b.score and a.suspected_target == b.suspected_target


def test_model_is_not_modified() -> None:
    torch.manual_seed(0)
    model = create_model(
        "small_cnn", num_classes=3, input_shape=(1, 8, 8), mean=(0.5,), std=(0.25,), width=0.25, hidden=8
    ).eval()
    model.classifier[1].weight.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    g = torch.Generator().manual_seed(0)
    data = ArrayData(torch.rand(20, 1, 8, 8, generator=g), torch.arange(20) % 3, 3)
    result = scan_model(model, data, ScanConfig(eps=(0.2,), steps=2, restarts=1, batch_size=8))  # 3 BN chunks
    assert not model.training and all(not m.training for m in model.modules())
    assert not model.classifier[1].weight.requires_grad and model.features[0].weight.requires_grad
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert result.neurons == 8 + 16 + 8 and len(result.errors_by_class) == 3
    assert sum(result.curve[0]["errors_by_class"]) == round(result.curve[0]["error_rate"] * 20)


def test_pure_helpers() -> None:
    assert flip_rate(0.5, [1, 3, 0]) == pytest.approx(0.375)
    assert flip_rate(0.0, [0, 0]) == 0.0
    assert scan_score([0, 96, 0, 0]) == pytest.approx(0.96)  # all errors on one class (pseudo-count 4)
    assert scan_score([10, 10, 10, 10]) == pytest.approx(10 / 44)
    assert scan_score([1, 0, 0, 0]) == pytest.approx(0.2)  # one error is no evidence
    assert scan_score([0, 0]) == 0.0 and scan_score([]) == 0.0
    assert verdict(0.2, 0.1) == "suspicious" and verdict(0.1, 0.1) == "clean"


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"eps": ()}, "--eps"),
        ({"eps": (0.0, 0.2)}, "--eps"),
        ({"eps": (1.5,)}, "--eps"),
        ({"eps": (float("nan"),)}, "--eps"),
        ({"steps": 0}, "--steps"),
        ({"restarts": 0}, "--restarts"),
        ({"batch_size": 3}, "--batch-size"),
        ({"threshold": -0.1}, "--threshold"),
        ({"threshold": float("inf")}, "--threshold"),
        ({"steps": 1.5}, "--steps"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ScanConfig(**kwargs)


def test_config_sorts_and_dedups_eps() -> None:
    assert ScanConfig(eps=(0.3, 0.1, 0.3)).eps == (0.1, 0.3)


def test_single_class_or_tiny_split_is_refused() -> None:
    data = toy_data()
    one_class = ArrayData(data.x[data.y == 1], data.y[data.y == 1], 4)
    with pytest.raises(ConfigError, match="2 classes"):
        scan_model(toy_model(False), one_class, FAST)
    with pytest.raises(ConfigError, match="2 samples"):
        scan_model(toy_model(False), data.subset(torch.tensor([0])), FAST)
