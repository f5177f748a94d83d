"""Robustness runners: attack scoring, eps sweeps, sensitivity, flags on normal and masked models, FeatureBox."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.evasion import PGD, BPDAWrapper
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.evaluation.feature_box import FeatureBox
from pruneguard.evaluation.robustness import (
    RobustnessSpec,
    correct_mask,
    evaluate_robustness,
    forward_twice,
    latency_ms,
    parameter_counts,
    run_attack,
    score_adversarial,
)
from pruneguard.models import create_model


class Round(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x)


def _data(n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = (x[:, 0, :2].mean((1, 2)) > x[:, 0, 2:].mean((1, 2))).long()
    return x, y


def _fit(model: nn.Module, x: Tensor, y: Tensor, steps: int = 200, lr: float = 0.5) -> nn.Module:
    for _ in range(steps):
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p.sub_(lr * g)
    return model.eval()


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    return _fit(model, *_data(256))


SPEC = RobustnessSpec(eps=0.1, steps=10, square_queries=300, sweep=(0.05, 0.1, 0.5), sensitivity_samples=32)


def test_normal_model_is_scored_consistently_and_raises_no_flag(net: nn.Module) -> None:
    x, y = _data(64, seed=1)
    result, advs = evaluate_robustness(net, x, y, SPEC)
    att = result["attacks"]
    assert set(att) == {"fgsm", "pgd", "square"} and result["n"] == 64
    assert result["clean_accuracy"] > 0.8
    for a in att.values():
        assert 0.0 <= a["robust_accuracy"] <= result["clean_accuracy"]
    assert att["pgd"]["robust_accuracy"] <= att["fgsm"]["robust_accuracy"]
    assert att["pgd"]["mean_perturbation"] <= 0.1 + 1e-6
    assert [r["eps"] for r in result["sweep"]] == [0.05, 0.1, 0.5] and result["sweep"][-1]["robust_accuracy"] == 0.0
    sens = result["sensitivity"]
    assert sens["input_gradient_norm_mean"] > 0 and sens["lipschitz_max"] >= sens["lipschitz_mean"] > 0
    assert sens["zero_gradient_share"] == 0.0 and sens["loss_adv_increase"] > sens["loss_noise_increase"]
    assert result["flags"] == []
    assert advs["pgd"].shape == x.shape and len(advs["sweep"]) == 3


def test_zero_gradient_model_raises_zero_gradient_and_black_box_flags(net: nn.Module) -> None:
    x, y = _data(64, seed=1)
    masked = nn.Sequential(Round(), net).eval()
    spec = RobustnessSpec(eps=0.3, steps=10, square_queries=300, sweep=(0.3, 0.5), sensitivity_samples=32)
    result, _ = evaluate_robustness(masked, x, y, spec)
    checks = {f["check"]: f for f in result["flags"]}
    assert "zero_gradients" in checks and checks["zero_gradients"]["values"]["zero_gradient_examples"] == 32
    assert "square_beats_pgd" in checks
    numbers = checks["square_beats_pgd"]["values"]
    assert numbers["square_accuracy"] < numbers["pgd_accuracy"] - numbers["tolerance"]
    att = result["attacks"]
    assert att["fgsm"]["robust_accuracy"] == result["clean_accuracy"]  # sign(0) = 0: FGSM does nothing


def test_transfer_scoring_and_nondeterminism(net: nn.Module) -> None:
    x, y = _data(32, seed=2)
    _, advs = evaluate_robustness(net, x, y, RobustnessSpec(eps=0.1, steps=5, square_queries=None, sweep=(0.5,)))
    noisy = nn.Sequential(net, nn.Dropout(0.5)).train()
    result, _ = evaluate_robustness(
        noisy,
        x,
        y,
        RobustnessSpec(eps=0.1, steps=5, square_queries=None),
        transfer_from={"dense": {"pgd": advs["pgd"]}},
    )
    assert "transfer_pgd_from_dense" in result["attacks"] and "square" not in result["attacks"]
    assert "nondeterministic" in {f["check"] for f in result["flags"]}
    assert noisy.training  # the runner restores the model's mode
    a, b = forward_twice(net, x)
    assert torch.equal(a, b)


def test_run_attack_is_reproducible_and_matches_scoring(net: nn.Module) -> None:
    x, y = _data(40, seed=3)
    attack = PGD(eps=0.1, step_size=0.025, steps=5)
    r1, a1 = run_attack(net, attack, x, y, batch_size=16, generator=torch.Generator().manual_seed(0))
    r2, a2 = run_attack(net, attack, x, y, batch_size=16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a1, a2) and r1.robust_accuracy == r2.robust_accuracy and r1.n == 40
    again = score_adversarial(net, x, y, a1, name="pgd")
    assert again.robust_accuracy == r1.robust_accuracy
    ok = correct_mask(net, x, y)
    assert r1.clean_accuracy == float(ok.float().mean())
    assert r1.success_rate == pytest.approx((int(ok.sum()) - round(r1.robust_accuracy * 40)) / int(ok.sum()))


def test_bpda_wrapper_is_scored_with_the_forward_model(net: nn.Module) -> None:
    x, y = _data(32, seed=4)
    wrapped = BPDAWrapper(nn.Sequential(Round(), net), net)
    result, _ = evaluate_robustness(wrapped, x, y, SPEC, sensitivity=False)
    assert result["sensitivity"] is None
    assert result["clean_accuracy"] == float(correct_mask(nn.Sequential(Round(), net), x, y).float().mean())
    assert "zero_gradients" not in {f["check"] for f in result["flags"]}


def test_spec_validates_and_builds_attacks() -> None:
    spec = RobustnessSpec(eps=0.2, steps=4, norm="l2", square_queries=None)
    assert spec.pgd().step_size == pytest.approx(0.125) and spec.fgsm().steps == 1 and spec.square() is None
    assert RobustnessSpec(eps=0.1).fgsm().name == "fgsm"
    assert spec.tolerance(1000) == 0.01 and spec.tolerance(30) == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="eps"):
        RobustnessSpec(eps=0.0)
    with pytest.raises(ConfigError, match="eps"):
        RobustnessSpec(eps=0.1, sweep=(2.0,))


def test_feature_box_keeps_the_model_and_maps_eps_per_feature() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=g) * torch.tensor([1.0, 100.0, 0.01]) + torch.tensor([0.0, 500.0, 1.0])
    mean, std = x.mean(0), x.std(0)
    model = create_model("mlp", num_classes=2, input_shape=(3,), mean=tuple(mean.tolist()), std=tuple(std.tolist()))
    model.eval()
    box = FeatureBox.for_model(model, x)
    u = box.to_unit(x)
    lo, hi = box.unit_bounds()
    assert u.shape == (50, 1, 1, 3) and bool((u >= lo).all() and (u <= hi).all())
    assert float(lo.min()) == 0.0 and float(hi.max()) == pytest.approx(1.0)
    assert torch.allclose(box.to_raw(u), x, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(box(u), model(x), atol=1e-4)
    step = torch.zeros_like(u)
    step[..., 1] = 0.5 / box.width  # half a standard deviation of feature 1, in unit coordinates
    moved = box.to_raw((u + step).clamp(lo, hi))
    inside = (u[:, 0, 0, 1] + step[:, 0, 0, 1]) <= hi[0, 0, 1]
    assert torch.allclose((moved - x)[inside, 1], 0.5 * std[1].expand(int(inside.sum())), rtol=1e-3)
    wrapped = box.wrap(nn.Identity())
    assert wrapped.width == box.width and torch.equal(wrapped.z_low, box.z_low)
    with pytest.raises(IncompatibleModelError, match="Normalize"):
        FeatureBox.for_model(nn.Linear(3, 2), x)


def test_latency_and_parameter_counts(net: nn.Module) -> None:
    x, _ = _data(8)
    assert latency_ms(net, x, repeats=2) > 0
    counts = parameter_counts(net)
    assert counts["params"] == 16 * 16 + 16 + 16 * 2 + 2 and counts["nonzero"] <= counts["params"]
