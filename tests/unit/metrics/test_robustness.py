"""Robustness metrics: each masking flag fires on a crafted case and stays quiet on a normal one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.metrics.robustness import (
    MaskingFlag,
    collapse_reason,
    flag_eps_curve,
    flag_nondeterministic,
    flag_quantized_masking,
    flag_weaker_attack_wins,
    flag_zero_gradients,
    input_gradient_norms,
    local_lipschitz,
    noise_loss_change,
    robustness_verdict,
)


class Round(nn.Module):
    """A non-differentiable pre-processing step: its input gradient is exactly zero."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x)


class Scaled(nn.Module):
    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) * self.factor


def _data(n: int = 64) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = (x[:, 0, :2].mean((1, 2)) > x[:, 0, 2:].mean((1, 2))).long()
    return x, y


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    x, y = _data(256)
    for _ in range(200):  # plain gradient descent (no optimizer import: keeps the module fast)
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p.sub_(0.5 * g)
    return model.eval()


def test_eps_curve_flag_fires_when_accuracy_does_not_fall() -> None:
    flag = flag_eps_curve([(0.05, 0.6), (0.1, 0.5), (0.5, 0.45)])
    assert isinstance(flag, MaskingFlag) and flag.check == "eps_curve"
    assert flag.values["accuracy_at_largest_eps"] == 0.45 and flag.values["largest_eps"] == 0.5
    rising = flag_eps_curve([(0.05, 0.3), (0.1, 0.1), (0.2, 0.4), (0.5, 0.0)])
    assert rising is not None and rising.values["rise"] == {"eps": 0.2, "from": 0.1, "to": 0.4}
    assert flag_eps_curve([(0.5, 0.0), (0.05, 0.6), (0.1, 0.3)]) is None  # order does not matter
    assert flag_eps_curve([]) is None


def test_weaker_attack_flags_compare_with_pgd() -> None:
    flag = flag_weaker_attack_wins("square_beats_pgd", "square", 0.2, 0.5)
    assert flag is not None and flag.values == {"square_accuracy": 0.2, "pgd_accuracy": 0.5, "tolerance": 0.01}
    assert flag_weaker_attack_wins("fgsm_beats_pgd", "fgsm", 0.5, 0.3) is None
    assert flag_weaker_attack_wins("fgsm_beats_pgd", "fgsm", 0.295, 0.3) is None  # within tolerance
    assert flag_weaker_attack_wins("fgsm_beats_pgd", "fgsm", None, 0.3) is None


def test_zero_gradient_layer_is_flagged_and_normal_model_is_not(net: nn.Module) -> None:
    x, y = _data()
    masked = nn.Sequential(Round(), net)
    grads = input_gradient_norms(masked, x, y)
    assert grads.shape == (64,) and bool((grads == 0).all())
    flag = flag_zero_gradients(grads)
    assert flag is not None and flag.values["zero_gradient_examples"] == 64
    normal = input_gradient_norms(net, x, y)
    assert bool((normal > 0).all()) and flag_zero_gradients(normal) is None


def test_dropout_in_train_mode_is_nondeterministic(net: nn.Module) -> None:
    x, _ = _data()
    model = nn.Sequential(net, nn.Dropout(0.5)).train()
    with torch.no_grad():
        a, b = model(x), model(x)
    flag = flag_nondeterministic(a, b)
    assert flag is not None and flag.values["max_abs_diff"] > 0
    model.eval()
    with torch.no_grad():
        assert flag_nondeterministic(model(x), model(x)) is None


def test_lipschitz_and_gradient_norms_are_positive_and_grow_with_scale() -> None:
    torch.manual_seed(1)
    small = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 2))
    with torch.no_grad():
        small[-1].weight.mul_(0.1)  # near-uniform predictions: CE gradients grow with the logit scale
    big = Scaled(small, 5.0)
    x, y = _data(32)
    kw = {"eps": 0.1, "n_random": 2, "steps": 3, "generator": torch.Generator().manual_seed(0)}
    lip_small = local_lipschitz(small, x, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)
    lip_big = local_lipschitz(big, x, **kw)
    assert lip_small.shape == (32,) and bool((lip_small > 0).all())
    assert torch.allclose(lip_big, 5 * lip_small, rtol=1e-3)
    g_small, g_big = input_gradient_norms(small, x, y), input_gradient_norms(big, x, y)
    assert bool((g_small > 0).all()) and float(g_big.mean()) > 2 * float(g_small.mean())
    l2 = local_lipschitz(small, x, eps=0.5, norm="l2", n_random=2, steps=2)
    assert bool((l2 > 0).all())


def test_lipschitz_restores_flags_and_validates(net: nn.Module) -> None:
    x, _ = _data(8)
    net.train()
    local_lipschitz(net, x, eps=0.1, n_random=1, steps=1)
    assert net.training and all(p.requires_grad for p in net.parameters())
    net.eval()
    with pytest.raises(ValueError, match="norm"):
        local_lipschitz(net, x, eps=0.1, norm="l3")
    with pytest.raises(ValueError, match="eps"):
        local_lipschitz(net, x, eps=0.0)


def test_adversarial_perturbation_hurts_more_than_noise_of_its_size(net: nn.Module) -> None:
    x, y = _data()
    x_in = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(net(x_in), y), x_in)
    x_adv = (x + 0.2 * grad.sign()).clamp(0, 1)
    out = noise_loss_change(net, x, y, x_adv, generator=torch.Generator().manual_seed(0))
    assert out["loss_adv_increase"] > 0 and out["loss_adv_increase"] > 3 * abs(out["loss_noise_increase"])
    same = noise_loss_change(net, x, y, x, norm="l2")
    assert same["loss_adv_increase"] == 0 and same["loss_noise_increase"] == 0


def test_quantized_masking_flag() -> None:
    flag = flag_quantized_masking({"bpda_pgd": 0.35, "transfer_pgd_from_float": 0.2}, 0.3)
    assert flag is not None and flag.check == "int8_masking" and "bpda_pgd" in flag.message
    assert flag.values["int8_bpda_pgd"] == 0.35 and flag.values["float_pgd_accuracy"] == 0.3
    assert flag_quantized_masking({"bpda_pgd": 0.31, "transfer_pgd_from_float": 0.3}, 0.3) is None


def test_collapse_reason() -> None:
    base = {"clean_accuracy": 0.9, "pgd_accuracy": 0.3}
    assert collapse_reason({"clean_accuracy": 0.88, "pgd_accuracy": 0.3}, base, max_acc_drop=0.05) is None
    why = collapse_reason({"clean_accuracy": 0.8, "pgd_accuracy": 0.3}, base, max_acc_drop=0.05)
    assert why is not None and "max_acc_drop=0.05" in why
    why = collapse_reason(
        {"clean_accuracy": 0.9, "pgd_accuracy": 0.2}, base, max_acc_drop=0.05, robust_key="pgd_accuracy"
    )
    assert why is not None and "pgd_accuracy" in why
    assert "non-finite" in collapse_reason({"clean_accuracy": float("nan")}, base, max_acc_drop=None)


def test_verdict_is_derived_from_the_numbers() -> None:
    dense = {"clean": 0.9, "pgd": 0.2, "square": 0.4}
    up = robustness_verdict(dense, {"clean": 0.89, "pgd": 0.3, "square": 0.45}, n=1000)
    assert up["helped"] is True and "raised PGD accuracy" in up["statement"]
    flat = robustness_verdict(dense, {"clean": 0.9, "pgd": 0.205, "square": 0.4}, n=1000)
    assert flat["helped"] is False and "did not measurably change" in flat["statement"]
    down = robustness_verdict(dense, {"clean": 0.9, "pgd": 0.1, "square": 0.3}, n=1000)
    assert down["helped"] is False and "lowered" in down["statement"]
    masked = robustness_verdict(
        dense, {"clean": 0.9, "pgd": 0.5, "square": 0.2}, n=1000, flags=[{"check": "square_beats_pgd"}]
    )
    assert masked["helped"] is None and "not trustworthy" in masked["statement"]
    at = robustness_verdict(dense, {"clean": 0.9, "pgd": 0.3, "square": 0.45}, n=1000, adversarial_training="pgd")
    assert "adversarial training" in at["statement"]
