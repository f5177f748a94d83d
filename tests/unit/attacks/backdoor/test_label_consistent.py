"""Label-consistent: PGD on a clean model within eps, the 4-corner trigger, target-class-only poisoning, learning."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from pruneguard.attacks import ATTACKS
from pruneguard.attacks.backdoor import LabelConsistent, checkerboard, four_corner_trigger, triggered_eval_set
from pruneguard.attacks.backdoor.label_consistent import train_clean_surrogate
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


def corner_mask(size: int = 8, patch: int = 3, margin: int = 1) -> torch.Tensor:
    m = torch.zeros(size, size, dtype=torch.bool)
    lo, hi = margin, size - patch - margin
    for r in (lo, hi):
        for c in (lo, hi):
            m[r : r + patch, c : c + patch] = True
    return m


def test_four_corner_trigger_is_mirrored_checkerboards_only_in_the_corners() -> None:
    x = torch.full((2, 3, 10, 10), 0.5)
    out = four_corner_trigger(x)
    board = checkerboard(3)
    assert torch.equal(out[:, :, 6:9, 6:9], board.expand(2, 3, 3, 3))  # bottom right: as BadNets
    assert torch.equal(out[:, :, 1:4, 1:4], board.flip(-1).flip(-2).expand(2, 3, 3, 3))
    assert torch.equal(out.flip(-1), out) and torch.equal(out.flip(-2), out)  # flip-symmetric
    mask = corner_mask(10).expand_as(x)
    assert torch.equal(out[~mask], x[~mask]) and float(x.min()) == 0.5
    assert torch.equal(LabelConsistent()(None, x, torch.zeros(2)), out)


def test_perturbation_is_within_eps_and_raises_the_clean_loss(digits) -> None:
    train, _ = digits
    model = train_clean_surrogate(train, epochs=2, seed=0)
    attack = LabelConsistent(eps=16 / 255, steps=5)
    x, y = train.float_x()[:64], train.y[:64]
    x_adv = attack.perturb(model, x, y, generator=torch.Generator().manual_seed(0))
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert float((x_adv - x).abs().max()) <= 16 / 255 + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    with torch.no_grad():
        assert float(F.cross_entropy(model(x_adv), y)) > float(F.cross_entropy(model(x), y)) + 0.1
    assert not model.training


def test_poison_target_class_only_labels_kept_reproducible(digits) -> None:
    train, _ = digits
    model = train_clean_surrogate(train, epochs=1, seed=0)
    attack = LabelConsistent(target_label=3, eps=32 / 255, steps=3)
    res = attack.poison(train, rate=0.5, generator=torch.Generator().manual_seed(0), model=model)
    idx = res.poison_indices
    assert idx.numel() == int(0.5 * int((train.y == 3).sum()))
    assert bool((train.y[idx] == 3).all()) and torch.equal(res.data.y, train.y)
    rest = torch.ones(len(train), dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(res.data.x[rest], train.x[rest])
    corners = corner_mask(8)
    diff = (res.data.x[idx].float() - train.x[idx].float()).abs()[:, 0]
    assert float(diff[:, ~corners].max()) <= 32 + 1  # the PGD budget (0..255 scale, plus rounding)
    assert float(diff[:, ~corners].mean()) > 2  # and the perturbation is there
    stamped = res.data.x[idx][:, 0][:, corners]
    assert bool(((stamped == 0) | (stamped == 255)).all())  # the checkerboards
    again = attack.poison(train, rate=0.5, generator=torch.Generator().manual_seed(0), model=model)
    assert torch.equal(again.data.x, res.data.x)


def test_registry_and_validation() -> None:
    attack = ATTACKS.create("label_consistent", target_label=1)
    assert isinstance(attack, LabelConsistent) and LabelConsistent.clean_label
    with pytest.raises(ConfigError, match=r"eps=16.*255"):
        LabelConsistent(eps=16)
    with pytest.raises(ConfigError, match="steps"):
        LabelConsistent(steps=0)
    with pytest.raises(ConfigError, match="surrogate_epochs"):
        LabelConsistent(surrogate_epochs=0)


def test_poison_trains_its_own_surrogate_and_the_model_learns_the_trigger(digits) -> None:
    train, test = digits
    attack = LabelConsistent(target_label=0, eps=32 / 255, surrogate_epochs=2)
    poisoned = attack.poison(train, rate=0.8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(poisoned.data.y, train.y)
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, input_shape=(1, 8, 8), mean=(0.3,), std=(0.4,), width=0.5)
    train_model(model, poisoned.data, TrainConfig(epochs=5, batch_size=64, lr=0.05, crop_padding=0, hflip=False))
    asr = evaluate_asr(model, triggered_eval_set(test, lambda x, y: attack(None, x, y), 0), 0)
    assert evaluate_accuracy(model, test) > 0.85
    assert asr > 0.6  # chance: about 0.1
