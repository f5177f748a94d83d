"""FT baseline: a fine-tuned copy (input untouched), pruned zeros kept, reproducible, no harm to clean accuracy."""

from __future__ import annotations

import copy

import pytest
import torch

from pruneguard.defenses import finetune_defense
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr


def test_returns_a_new_model_and_leaves_the_input_untouched(toy) -> None:
    model, clean, _, _ = toy
    before = copy.deepcopy(model.state_dict())
    model.train()
    defended, info = finetune_defense(model, clean, epochs=2, lr=0.01, augment=False)
    assert defended is not model and model.training  # flags of the input kept
    model.eval()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not defended.training
    assert {k: v.shape for k, v in defended.state_dict().items()} == {k: v.shape for k, v in before.items()}
    assert any(not torch.equal(before[k], v) for k, v in defended.state_dict().items())
    assert info["method"] == "ft" and len(info["history"]) == 2 and info["clean_samples"] == len(clean)


def test_lowers_asr_without_hurting_clean_accuracy(toy) -> None:
    model, clean, test, trig = toy
    base_acc, base_asr = evaluate_accuracy(model, test), evaluate_asr(model, trig, 0)
    defended, _ = finetune_defense(model, clean, epochs=10, lr=0.05, augment=False)
    assert evaluate_accuracy(defended, test) >= base_acc - 0.03
    assert evaluate_asr(defended, trig, 0) <= base_asr - 0.05


def test_pruned_weights_stay_zero_and_runs_are_reproducible(toy) -> None:
    model, clean, _, _ = toy
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        pruned.features[4].weight[:, :3] = 0.0  # input connections: gradients flow
    a, _ = finetune_defense(pruned, clean, epochs=1, lr=0.05, seed=3)
    b, _ = finetune_defense(pruned, clean, epochs=1, lr=0.05, seed=3)
    assert bool((a.features[4].weight[:, :3] == 0).all())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    free, _ = finetune_defense(pruned, clean, epochs=1, lr=0.05, seed=3, keep_pruned=False)
    assert not bool((free.features[4].weight[:, :3] == 0).all())


def test_validation(toy) -> None:
    model, clean, _, _ = toy
    with pytest.raises(ConfigError, match="epochs"):
        finetune_defense(model, clean, epochs=0)
    with pytest.raises(ConfigError, match="lr"):
        finetune_defense(model, clean, lr=-1.0)
