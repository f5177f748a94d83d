"""ChannelPruner and remove_channels: physically smaller models through Torch-Pruning."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.models import create_model
from pruneguard.pruning import (
    PRUNERS,
    ChannelPruner,
    MagnitudePruner,
    PruningPlan,
    channel_norm_scores,
    remove_channels,
)
from pruneguard.pruning.structured import channel_widths

CASES = {
    "small_cnn": ((1, 8, 8), {"width": 0.25, "hidden": 16}),
    "mlp": ((10,), {}),
    "resnet18_cifar": ((3, 8, 8), {"width": 0.125}),
    "preact_resnet18": ((3, 8, 8), {"width": 0.125}),
    "vgg11_bn": ((3, 8, 8), {"width": 0.125}),
}


def _model(arch: str) -> tuple[nn.Module, torch.Tensor]:
    shape, kwargs = CASES[arch]
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, input_shape=shape, **kwargs)
    return model, torch.rand(4, *shape)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_smaller(arch: str, ratio: float) -> None:
    model, x = _model(arch)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out_before = model(x)
    small = remove_channels(model, ratio, x[:2])
    assert small is not model
    assert _n_params(small) < _n_params(model)
    assert small(x).shape == out_before.shape == (4, 4)
    # the input model is untouched: same tensors, same output
    assert before.keys() == model.state_dict().keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model(x), out_before)


@pytest.mark.parametrize("arch", list(CASES))
def test_remove_channels_gives_a_smaller_working_model(arch: str) -> None:
    _check_smaller(arch, 0.5)


def test_plan_records_channels_and_replays_after_json() -> None:
    model, x = _model("small_cnn")
    plan = ChannelPruner(sparsity=0.5).plan(model, x)
    assert plan.method == "channel" and plan.granularity == "channel" and not plan.masks
    assert abs(plan.stats["channel_sparsity"] - 0.5) <= 0.01
    widths = channel_widths(model)
    assert plan.remaining["classifier.4"] == 4  # the classifier keeps its outputs
    assert plan.remaining["features.0"] == widths["features.0"] // 2
    for name, idx in plan.channels.items():
        assert len(set(idx)) == len(idx) and max(idx) < widths[name]
    back = PruningPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert back.channels == plan.channels and back.remaining == plan.remaining
    a, b = remove_channels(model, plan, x), remove_channels(model, back, x)
    assert channel_widths(a) == plan.remaining
    assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_structured_model_reloads_from_state_dict_plus_plan() -> None:
    model, x = _model("small_cnn")
    model.eval()
    plan = ChannelPruner(sparsity=0.5).plan(model, x)
    small = remove_channels(model, plan, x)
    state = small.state_dict()
    torch.manual_seed(7)  # a fresh dense model with other weights, as create_model would build it on load
    fresh = create_model("small_cnn", num_classes=4, input_shape=(1, 8, 8), width=0.25, hidden=16)
    rebuilt = remove_channels(fresh, PruningPlan.from_json(plan.to_json()), x)
    rebuilt.load_state_dict(state)
    assert torch.equal(rebuilt.eval()(x), small.eval()(x))


def test_plan_removes_the_lowest_norm_channels() -> None:
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([6.0, 1.0, 5.0, 2.0, 4.0, 3.0])[:, None].expand(6, 4))
        model[2].weight.fill_(1.0)  # equal input-channel norms: the first layer decides
    assert torch.allclose(channel_norm_scores(model[0]), torch.tensor([12.0, 2.0, 10.0, 4.0, 8.0, 6.0]))
    x = torch.rand(2, 4)
    plan = ChannelPruner(sparsity=0.5).plan(model, ArrayData(x, torch.zeros(2, dtype=torch.long), 2))
    assert sorted(plan.channels["0"]) == [1, 3, 5]
    small = remove_channels(model, plan, x)
    assert torch.equal(small[0].weight[:, 0], torch.tensor([6.0, 5.0, 4.0]))
    assert small(x).shape == (2, 2)


def test_plan_and_remove_leave_the_model_untouched_and_keep_training_flag() -> None:
    model, x = _model("small_cnn")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = remove_channels(model, ChannelPruner(sparsity=0.3).plan(model, x), x)
    assert model.training and small.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats not updated


def test_registry_validation_and_bad_plans() -> None:
    assert isinstance(PRUNERS.create("channel", sparsity=0.2), ChannelPruner)
    with pytest.raises(ConfigError):
        ChannelPruner(sparsity=-0.1)
    with pytest.raises(ConfigError):
        ChannelPruner(round_to=0)
    model, x = _model("mlp")
    with pytest.raises(ConfigError):
        ChannelPruner().plan(model)  # no data and no input_shape to trace with
    with pytest.raises(ConfigError):
        remove_channels(model, MagnitudePruner(sparsity=0.5).plan(model), x)
