"""SIG: the sinusoidal signal, clean-label poisoning of target-class images only, and that a model learns it."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from pruneguard.attacks import ATTACKS
from pruneguard.attacks.backdoor import SIG, add_signal, sinusoidal_signal, triggered_eval_set
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_asr
from pruneguard.models import create_model
from pruneguard.models.fit import TrainConfig
from pruneguard.training.train import train_model


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images(n: int = 200, size: int = 16) -> ArrayData:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    return ArrayData(x, torch.arange(n) % 4, 4)


def noisy_templates(n: int, seed: int) -> ArrayData:
    """A hard 4-class task (faint class templates under strong noise): the clean features are weak."""
    templates = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1234)) * 2 - 1
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = (0.5 + 0.1 * templates[y] + 0.25 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1)
    return ArrayData(x, y, 4)


def test_signal_is_the_papers_sinusoid_along_columns() -> None:
    v = sinusoidal_signal(16, delta=0.1, frequency=6)
    expected = torch.tensor([0.1 * math.sin(2 * math.pi * j * 6 / 16) for j in range(16)])
    assert torch.allclose(v, expected, atol=1e-6)
    x = torch.full((2, 3, 5, 16), 0.5)
    out = add_signal(x, delta=0.1, frequency=6)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.allclose(out, 0.5 + expected.view(1, 1, 1, -1).expand_as(x), atol=1e-6)  # same on rows/channels
    assert float(x.max()) == 0.5  # input unchanged


def test_trigger_stays_in_unit_range_and_within_delta() -> None:
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = SIG(delta=20 / 255)(None, x, torch.zeros(4))
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float((out - x).abs().max()) <= 20 / 255 + 1e-6
    strong = SIG(delta=20 / 255, test_delta=40 / 255)(None, x, torch.zeros(4))
    assert torch.allclose(strong, add_signal(x, delta=40 / 255, frequency=6))


def test_poison_only_target_class_and_keeps_labels() -> None:
    data, attack = images(), SIG(target_label=2)
    res = attack.poison(data, rate=0.5, generator=torch.Generator().manual_seed(1))
    targets = int((data.y == 2).sum())
    assert res.poison_indices.numel() == int(0.5 * targets)
    assert bool((data.y[res.poison_indices] == 2).all())
    assert torch.equal(res.data.y, data.y)  # clean label: no label changes
    untouched = torch.ones(len(data), dtype=torch.bool)
    untouched[res.poison_indices] = False
    assert torch.equal(res.data.x[untouched], data.x[untouched])
    diff = (res.data.x[res.poison_indices].float() - data.x[res.poison_indices].float()).abs()
    assert float(diff.max()) <= 21 and float(diff.mean()) > 1  # delta = 20 on the 0..255 scale
    assert res.data.x.dtype == torch.uint8
    again = attack.poison(data, rate=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.poison_indices, res.poison_indices) and torch.equal(again.data.x, res.data.x)
    other = attack.poison(data, rate=0.5, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(other.poison_indices, res.poison_indices)


def test_registry_and_validation() -> None:
    attack = ATTACKS.create("sig", target_label=3)
    assert isinstance(attack, SIG) and attack.target_label == 3 and SIG.clean_label
    assert ATTACKS.meta("sig")["kind"] == "backdoor"
    with pytest.raises(ConfigError, match=r"delta=20.*255"):
        SIG(delta=20)
    with pytest.raises(ConfigError, match="frequency"):
        SIG(frequency=0)
    with pytest.raises(ConfigError, match="target_label"):
        SIG(target_label=-1)
    with pytest.raises(ConfigError, match="frequency=6.*width 12"):  # sin(2 pi j 6 / 12) = 0 on every column
        SIG()(None, torch.rand(1, 1, 12, 12), torch.zeros(1))


def _asr_after_training(attack: SIG, rate: float | None) -> float:
    train, test = noisy_templates(800, 0), noisy_templates(400, 1)
    fit = train if rate is None else attack.poison(train, rate=rate, generator=torch.Generator().manual_seed(0)).data
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=4, input_shape=(1, 8, 8), mean=(0.5,), std=(0.25,), width=0.5)
    train_model(model, fit, TrainConfig(epochs=5, batch_size=64, lr=0.05, crop_padding=0, hflip=False))
    trig = triggered_eval_set(test, lambda x, y: attack(None, x, y), attack.target_label)
    return evaluate_asr(model, trig, attack.target_label)


def test_model_learns_the_signal_without_any_label_change() -> None:
    attack = SIG(target_label=0, delta=0.15)  # a stronger signal than the paper's: a 5-epoch tiny model
    clean_asr = _asr_after_training(attack, None)
    poisoned_asr = _asr_after_training(attack, 1.0)
    assert poisoned_asr >= clean_asr + 0.3, (clean_asr, poisoned_asr)
