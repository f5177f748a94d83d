"""Poisoning: rate, relabelling, only non-target images, trigger placement; the ASR definition."""

from __future__ import annotations

import pytest
import torch

from pruneguard.attacks import ATTACKS
from pruneguard.attacks.backdoor import BadNets, Blend, checkerboard, triggered_eval_set
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError, UnknownNameError
from pruneguard.metrics import attack_success_rate


def images(n: int = 200, size: int = 12) -> ArrayData:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    return ArrayData(x, torch.arange(n) % 4, 4)


@pytest.mark.parametrize("attack", [BadNets(target_label=1), Blend(target_label=1)])
def test_poison_rate_labels_and_only_non_target(attack) -> None:
    data = images()
    res = attack.poison(data, rate=0.1, generator=torch.Generator().manual_seed(1))
    eligible = int((data.y != 1).sum())
    assert res.poison_indices.numel() == int(0.1 * eligible)
    assert bool((data.y[res.poison_indices] != 1).all())  # drawn from non-target images only
    assert bool((res.data.y[res.poison_indices] == 1).all())  # relabelled to the target
    untouched = torch.ones(len(data), dtype=torch.bool)
    untouched[res.poison_indices] = False
    assert torch.equal(res.data.x[untouched], data.x[untouched])
    assert torch.equal(res.data.y[untouched], data.y[untouched])
    assert not torch.equal(res.data.x[res.poison_indices], data.x[res.poison_indices])
    assert data.x.dtype == res.data.x.dtype == torch.uint8
    again = attack.poison(data, rate=0.1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.poison_indices, res.poison_indices)


def test_badnets_stamps_checkerboard_in_bottom_right_corner() -> None:
    x = torch.full((2, 3, 10, 10), 0.5)
    out = BadNets()(None, x, torch.zeros(2))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out[:, :, 6:9, 6:9], checkerboard(3).expand(2, 3, 3, 3))
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[:, :, 6:9, 6:9] = False
    assert torch.equal(out[mask], x[mask])
    assert float(x.min()) == 0.5  # input not modified


def test_blend_mixes_fixed_pattern_with_alpha() -> None:
    x = torch.rand(3, 1, 8, 8)
    attack = Blend(alpha=0.2)
    out = attack(None, x, torch.zeros(3))
    pattern = attack.pattern((1, 8, 8))
    assert torch.allclose(out, 0.8 * x + 0.2 * pattern)
    assert torch.equal(pattern, Blend(alpha=0.2).pattern((1, 8, 8)))  # fixed by the seed
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_triggered_eval_set_drops_target_class_and_keeps_true_labels() -> None:
    data = images()
    trig = triggered_eval_set(data, lambda x, y: BadNets()(None, x, y), target_label=2)
    assert len(trig) == int((data.y != 2).sum())
    assert bool((trig.y != 2).all())


def test_asr_counts_only_non_target_inputs() -> None:
    preds = torch.tensor([0, 0, 1, 2, 0])
    y_true = torch.tensor([1, 0, 2, 1, 3])  # the second input's true class is the target: excluded
    assert attack_success_rate(preds, 0, y_true) == pytest.approx(2 / 4)
    assert attack_success_rate(preds, 0) == pytest.approx(3 / 5)


def test_registry_and_validation() -> None:
    assert isinstance(ATTACKS.create("badnets", target_label=3), BadNets)
    with pytest.raises(UnknownNameError, match="badnets"):
        ATTACKS.get("badnet")
    with pytest.raises(ConfigError, match="rate"):
        BadNets().poison(images(), rate=0.0)
    with pytest.raises(ConfigError, match="alpha"):
        Blend(alpha=1.5)
