"""AutoAttack and Square wrappers (pyautoattack): CPU runs, strength, RNG isolation, validation."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import Tensor, nn

from pruneguard.attacks.evasion import AutoAttack, Square, autoattack, pgd, square
from pruneguard.errors import ConfigError, IncompatibleModelError

pytest.importorskip("pyautoattack")


def _acc(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_autoattack_runs_on_cpu_and_is_at_least_as_strong_as_pgd(
    model: nn.Module, batch: tuple[Tensor, Tensor]
) -> None:
    x, y = batch[0][:32], batch[1][:32]
    x_aa = AutoAttack(eps=0.1, version="custom", attacks=("apgd-ce", "apgd-t"))(model, x, y, generator=_gen())
    x_pgd = pgd(model, x, y, eps=0.1, step_size=0.025, steps=10, generator=_gen())
    assert x_aa.device.type == "cpu" and float((x_aa - x).abs().max()) <= 0.1 + 1e-6
    robust_aa, robust_pgd = _acc(model, x_aa, y), _acc(model, x_pgd, y)
    assert robust_aa < _acc(model, x, y)
    assert robust_aa <= robust_pgd + 1 / 32  # APGD-CE + APGD-T is the stronger attack, up to one example


def test_autoattack_isolates_the_global_rng_and_the_trace_function(
    model: nn.Module, batch: tuple[Tensor, Tensor]
) -> None:
    x, y = batch[0][:4], batch[1][:4]
    state, trace = torch.get_rng_state(), sys.gettrace()
    autoattack(model, x, y, eps=0.3, version="custom", attacks=("apgd-ce",), generator=_gen())
    assert torch.equal(torch.get_rng_state(), state)
    assert sys.gettrace() is trace


def test_autoattack_maps_other_bounds_to_the_unit_box() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(16, 6, generator=_gen(1)).clamp(-2, 2)
    with torch.no_grad():
        y = mlp(x).argmax(1)
    x_adv = autoattack(
        mlp, x, y, eps=0.5, version="custom", attacks=("apgd-ce",), clip_min=-2.0, clip_max=2.0, generator=_gen()
    )
    assert float((x_adv - x).abs().max()) <= 0.5 + 1e-5 and float(x_adv.abs().max()) <= 2.0
    assert _acc(mlp, x_adv, y) < 1.0


def test_square_reduces_accuracy_with_enough_queries(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch[0][:32], batch[1][:32]
    clean = _acc(model, x, y)
    few = _acc(model, square(model, x, y, eps=0.2, n_queries=5, generator=_gen()), y)
    many = _acc(model, square(model, x, y, eps=0.2, n_queries=300, generator=_gen()), y)
    assert many <= few and many <= clean - 0.3


def test_square_targeted(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch[0][:32], batch[1][:32]
    target = (y + 1) % 4
    x_adv = Square(eps=0.2, n_queries=300)(model, x, y, target=target, generator=_gen())
    with torch.no_grad():
        assert float((model(x_adv).argmax(1) == target).float().mean()) >= 0.3


def test_square_isolates_the_global_rng(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    state = torch.get_rng_state()
    square(model, batch[0][:4], batch[1][:4], eps=0.1, n_queries=5, generator=_gen())
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"version": "fast"}, r"version='fast' is not an AutoAttack version; accepted: standard, plus, rand, custom"),
        ({"version": "custom"}, r"attacks=None with version='custom'"),
        ({"version": "custom", "attacks": ["apgd-x"]}, r"unknown \['apgd-x'\]"),
        ({"attacks": ["apgd-ce"]}, r"with version='standard'; accepted: attacks=None"),
        ({"eps": 8}, r"did you mean 8/255"),
        ({"norm": "l1"}, r"norm='l1' is not supported"),
    ],
)
def test_autoattack_rejects_bad_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AutoAttack(**kwargs)  # type: ignore[arg-type]


def test_autoattack_rejects_target_and_too_few_classes_for_dlr(batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch[0][:4], batch[1][:4]
    three = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(ConfigError, match="AutoAttack is untargeted"):
        AutoAttack(eps=0.1)(three, x, y, target=y)
    with pytest.raises(IncompatibleModelError, match="3 classes; apgd-t need >= 4"):
        AutoAttack(eps=0.1, version="custom", attacks=("apgd-t",))(three, x, y % 3)


def test_square_rejects_bad_settings_and_non_images() -> None:
    with pytest.raises(ConfigError, match=r"n_queries=0 is invalid"):
        Square(n_queries=0)
    with pytest.raises(ConfigError, match=r"p_init=0 is outside \(0, 1\]"):
        Square(p_init=0)
    mlp = nn.Linear(6, 3)
    with pytest.raises(ConfigError, match=r"Square accepts only images"):
        Square(eps=0.1)(mlp, torch.rand(4, 6), torch.zeros(4, dtype=torch.long))
