"""Fine-Pruning: last conv layer by trace, dormant channels pruned first, kept at zero through fine-tuning."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pruneguard.defenses import fine_pruning, last_conv_layer
from pruneguard.defenses.fine_pruning import channel_activations
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr
from pruneguard.models import create_model


def test_last_conv_layer_is_found_by_tracing() -> None:
    gap = create_model("gap_cnn", num_classes=3, input_shape=(1, 8, 8), width=0.25)
    assert last_conv_layer(gap, torch.rand(2, 1, 8, 8)) == ("features.8", "features.9")
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(80, 2))
    assert last_conv_layer(plain, torch.rand(2, 1, 8, 8)) == ("2", None)
    with pytest.raises(IncompatibleModelError, match="Conv2d"):
        last_conv_layer(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), torch.rand(2, 1, 8, 8))


def test_channel_activations_are_mean_relu_outputs(toy) -> None:
    model, clean, _, _ = toy
    acts = channel_activations(model, clean, "features.9", batch_size=100)
    with torch.no_grad():
        out = model.features[:10](model.normalize(clean.float_x()))
    assert torch.allclose(acts, out.relu().mean(dim=(0, 2, 3)), atol=1e-5)


def test_prunes_dormant_channels_keeps_them_zero_and_lowers_asr(toy) -> None:
    model, clean, test, trig = toy
    before = copy.deepcopy(model.state_dict())
    defended, info = fine_pruning(model, clean, max_acc_drop=0.04, epochs=10, lr=0.01, augment=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched
    assert defended is not model and not defended.training
    assert {k: v.shape for k, v in defended.state_dict().items()} == {k: v.shape for k, v in before.items()}
    pruned = torch.tensor(info["pruned"])
    assert info["layer"] == "features.8" and info["norm"] == "features.9" and pruned.numel() > 0
    acts = channel_activations(model, clean, "features.9")
    assert float(acts[pruned].max()) <= float(acts[~torch.isin(torch.arange(info["channels"]), pruned)].min())
    assert info["clean_accuracy_pruned"] >= info["clean_accuracy_before"] - 0.04
    conv, bn = defended.features[8], defended.features[9]
    assert bool((conv.weight[pruned] == 0).all()) and bool((bn.weight[pruned] == 0).all())
    assert bool((bn.bias[pruned] == 0).all())  # still zero after the fine-tuning
    with torch.no_grad():
        out = defended.features[:10](defended.normalize(clean.float_x()[:32]))
    assert bool((out[:, pruned] == 0).all())  # the channels are really off
    assert evaluate_accuracy(defended, test) >= evaluate_accuracy(model, test) - 0.05
    assert evaluate_asr(defended, trig, 0) <= evaluate_asr(model, trig, 0) - 0.2


def test_max_ratio_caps_pruning_and_epochs_zero_prunes_only(toy) -> None:
    model, clean, _, _ = toy
    defended, info = fine_pruning(model, clean, max_acc_drop=1.0, max_ratio=0.5, step=3, epochs=0)
    assert info["channels"] == 32 and info["history"] == []
    assert len(info["pruned"]) == 15  # steps of 3 up to 0.5 * 32 = 16 channels
    assert [row["pruned"] for row in info["prune_history"]] == [0, 3, 6, 9, 12, 15]
    kept = ~torch.isin(torch.arange(32), torch.tensor(info["pruned"]))
    assert torch.equal(defended.features[8].weight[kept], model.features[8].weight[kept])


def test_validation(toy) -> None:
    model, clean, _, _ = toy
    for kwargs, name in (
        ({"max_acc_drop": 2.0}, "max_acc_drop"),
        ({"max_ratio": 1.0}, "max_ratio"),
        ({"step": 0}, "step"),
        ({"epochs": -1}, "epochs"),
    ):
        with pytest.raises(ConfigError, match=name):
            fine_pruning(model, clean, **kwargs)
