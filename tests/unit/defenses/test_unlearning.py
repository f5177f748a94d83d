"""Neural Cleanse trigger reversal and unlearning: the stamp, the reversal, the unlearning, bad input."""

from __future__ import annotations

import copy

import pytest
import torch

from pruneguard.data.tensors import ArrayData
from pruneguard.defenses.unlearning import ReversedTrigger, UnlearnConfig, reverse_trigger, stamp, unlearn_
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr

CFG = UnlearnConfig(steps=300, batch_size=64, lr=0.1, epochs=15, finetune_lr=0.02)


@pytest.fixture(scope="module")
def reversed_toy(toy) -> ReversedTrigger:
    model, clean, _, _ = toy
    return reverse_trigger(model, clean, 0, CFG, generator=torch.Generator().manual_seed(0))


def test_stamp_is_the_convex_mix_of_image_and_pattern() -> None:
    x, p = torch.rand(3, 1, 4, 4), torch.rand(1, 4, 4)
    m = torch.zeros(1, 4, 4)
    m[0, 0, 0] = 1.0
    m[0, 1, 1] = 0.25
    out = stamp(x, m, p)
    assert torch.equal(out[:, :, 2:, 2:], x[:, :, 2:, 2:])
    assert torch.allclose(out[:, 0, 0, 0], p[0, 0, 0].expand(3))
    assert torch.allclose(out[:, 0, 1, 1], 0.75 * x[:, 0, 1, 1] + 0.25 * p[0, 1, 1])


def test_reversal_finds_a_small_stamp_to_the_backdoor_target(toy, reversed_toy) -> None:
    model, clean, _, _ = toy
    before = copy.deepcopy(model.state_dict())
    t = reversed_toy
    assert t.target == 0 and t.success_rate >= 0.9
    assert 0 <= float(t.mask.min()) and float(t.mask.max()) <= 1 and 0 <= float(t.pattern.min()) <= 1
    # the real trigger is a 2x2 patch: the stamp that reaches the target is far smaller than the image
    assert t.mask_l1 < 0.25 * t.mask.numel()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # model untouched


def test_a_clean_class_needs_a_larger_stamp_than_the_backdoor_target(toy, reversed_toy) -> None:
    """Neural Cleanse's detection premise, on the toy: the target's stamp is the smallest."""
    model, clean, _, _ = toy
    other = reverse_trigger(model, clean, 3, CFG, generator=torch.Generator().manual_seed(0))
    assert other.mask_l1 > 1.5 * reversed_toy.mask_l1


def test_unlearning_removes_the_backdoor_and_keeps_accuracy(toy, reversed_toy) -> None:
    model, clean, test, triggered = toy
    acc0, asr0 = evaluate_accuracy(model, test), evaluate_asr(model, triggered, 0)
    assert asr0 > 0.8
    tuned = copy.deepcopy(model)
    unlearn_(tuned, clean, reversed_toy, CFG)
    assert evaluate_asr(tuned, triggered, 0) < 0.3 * asr0
    assert evaluate_accuracy(tuned, test) > acc0 - 0.08


def test_unlearning_keeps_pruned_weights_at_zero(toy, reversed_toy) -> None:
    model, clean, _, _ = toy
    tuned = copy.deepcopy(model)
    conv = next(m for m in tuned.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight[0] = 0.0
    unlearn_(tuned, clean, reversed_toy, UnlearnConfig(epochs=1))
    assert bool((conv.weight[0] == 0).all())


def test_bad_input_is_refused(toy) -> None:
    model, clean, _, _ = toy
    with pytest.raises(ConfigError, match="target=12"):
        reverse_trigger(model, clean, 12, CFG)
    flat = ArrayData(torch.rand(4, 5), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ConfigError, match="images"):
        reverse_trigger(model, flat, 0, CFG)
    with pytest.raises(ConfigError, match="--unlearn-stamp-fraction=0"):
        UnlearnConfig(stamp_fraction=0)
    with pytest.raises(ConfigError, match="--unlearn-epochs=0"):
        UnlearnConfig(epochs=0)
