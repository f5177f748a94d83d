"""Trojan: neuron selection by weight, a trigger that fires them, poisoning, a re-creatable record, learning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import fields

import pytest
import torch
from torch import nn

from pruneguard.attacks import ATTACKS
from pruneguard.attacks.backdoor import Trojan, optimise_trojan_trigger, triggered_eval_set
from pruneguard.attacks.backdoor.label_consistent import train_clean_surrogate
from pruneguard.attacks.backdoor.trojan import hidden_layers, select_neurons
from pruneguard.data.datasets import load_dataset
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr
from pruneguard.models import create_model
from pruneguard.models.fit import TrainConfig
from pruneguard.training.train import train_model


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[ArrayData, ArrayData]:
    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.fixture(scope="module")
def clean_model(digits) -> nn.Module:
    return train_clean_surrogate(digits[0], epochs=2, seed=0)


def test_hidden_layers_exclude_the_output_layer_and_neurons_are_the_strongest() -> None:
    model = create_model("small_cnn", num_classes=3, input_shape=(1, 8, 8), width=0.25, hidden=8)
    assert hidden_layers(model, torch.rand(2, 1, 8, 8)) == ["features.0", "features.4", "classifier.1"]
    layer = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -1, 0, 0], [0.1, 0.1, 0.1, 0.1], [-3.0, 0, 0, 0]]))
    assert select_neurons(layer, 1) == (2,)
    assert select_neurons(layer, 2) == (0, 2)
    with pytest.raises(ConfigError, match="num_neurons"):
        select_neurons(layer, 4)


def test_optimised_trigger_fires_the_selected_neurons(clean_model) -> None:
    trig = optimise_trojan_trigger(clean_model, (1, 8, 8), patch_size=3, num_neurons=2, steps=50, seed=0)
    assert trig.layer == "classifier.1" and len(trig.neurons) == 2
    assert trig.pattern.shape == (1, 3, 3)
    assert float(trig.pattern.min()) >= 0 and float(trig.pattern.max()) <= 1
    assert torch.equal(trig.pattern, (trig.pattern * 255).round() / 255)  # storable exactly as uint8
    layer = dict(clean_model.named_modules())["classifier.1"]
    neurons = list(trig.neurons)

    def activation(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return layer(torch.flatten(clean_model.features(clean_model.normalize(x)), 1))[:, neurons].mean(1)

    blank = torch.zeros(256, 1, 8, 8)
    blank[:, :, 4:7, 4:7] = torch.rand(256, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    random_triggers = activation(blank)
    assert trig.activation > float(random_triggers.quantile(0.9))  # beats random triggers in the same region
    start = optimise_trojan_trigger(clean_model, (1, 8, 8), patch_size=3, num_neurons=2, steps=0, seed=0)
    assert trig.activation > start.activation * 1.3
    optimised = torch.zeros(1, 1, 8, 8)
    optimised[:, :, 4:7, 4:7] = trig.pattern
    assert float(activation(optimised)) == pytest.approx(trig.activation, abs=1e-5)
    assert not clean_model.training and all(p.requires_grad for p in clean_model.parameters())


def test_poison_relabels_non_target_images_and_records_the_trigger(digits, clean_model) -> None:
    train, _ = digits
    attack = Trojan(target_label=2, patch_size=3, steps=30)
    with pytest.raises(ConfigError, match="trigger"):
        attack(None, torch.rand(1, 1, 8, 8), torch.zeros(1))
    res = attack.poison(train, rate=0.1, generator=torch.Generator().manual_seed(0), model=clean_model)
    idx = res.poison_indices
    assert idx.numel() == int(0.1 * int((train.y != 2).sum()))
    assert bool((train.y[idx] != 2).all()) and bool((res.data.y[idx] == 2).all())
    pattern = (attack.pattern() * 255).round().to(torch.uint8)
    assert bool((res.data.x[idx][:, :, 4:7, 4:7] == pattern).all())  # 3x3 region, 1 px from the corner
    rest = torch.ones(len(train), dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(res.data.x[rest], train.x[rest]) and torch.equal(res.data.y[rest], train.y[rest])
    record = json.loads(json.dumps({f.name: getattr(attack, f.name) for f in fields(attack)}))
    again = ATTACKS.create("trojan", **record)  # what `pruneguard train` records re-creates the trigger
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(again(None, x, torch.zeros(3)), attack(None, x, torch.zeros(3)))
    same = Trojan(target_label=2, patch_size=3, steps=30).poison(
        train, rate=0.1, generator=torch.Generator().manual_seed(0), model=clean_model
    )
    assert torch.equal(same.data.x, res.data.x)


def test_fitted_returns_a_copy_and_validation(digits, clean_model) -> None:
    attack = Trojan(patch_size=3, steps=5)
    fitted = attack.fitted(digits[0], model=clean_model)
    assert attack.trigger is None and fitted.trigger is not None
    assert isinstance(ATTACKS.create("trojan", target_label=1), Trojan)
    with pytest.raises(ConfigError, match="trigger"):
        Trojan(patch_size=3, trigger=[[[2.0] * 3] * 3])
    with pytest.raises(ConfigError, match="layer='nope'"):
        optimise_trojan_trigger(clean_model, (1, 8, 8), patch_size=3, layer="nope")
    with pytest.raises(ConfigError, match="patch_size"):
        Trojan(patch_size=1)


def test_poison_trains_its_own_surrogate_and_the_model_learns_the_trigger(digits) -> None:
    train, test = digits
    attack = Trojan(target_label=0, patch_size=3, steps=30, surrogate_epochs=2)
    poisoned = attack.poison(train, rate=0.1, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, input_shape=(1, 8, 8), mean=(0.3,), std=(0.4,), width=0.5)
    train_model(model, poisoned.data, TrainConfig(epochs=5, batch_size=64, lr=0.05, crop_padding=0, hflip=False))
    asr = evaluate_asr(model, triggered_eval_set(test, lambda x, y: attack(None, x, y), 0), 0)
    assert evaluate_accuracy(model, test) > 0.85
    assert asr > 0.8  # chance: about 0.1
