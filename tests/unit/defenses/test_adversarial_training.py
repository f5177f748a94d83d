"""PGD-AT and TRADES fine-tuning on a toy problem with one robust and many non-robust features."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.defenses.adversarial_training import adversarial_finetune, pgd_linf, trades_adversary
from pruneguard.errors import ConfigError

EPS = 0.1
WEAK = 20


def _data(n: int, seed: int) -> ArrayData:
    """Feature 0 separates the classes by 0.3 (robust to eps=0.1); 20 weak features by 0.05 each (not robust)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    s = (2 * y - 1).float()[:, None]
    robust = 0.5 + 0.3 * s
    weak = 0.5 + 0.05 * s + 0.02 * torch.randn(n, WEAK, generator=g)
    return ArrayData(torch.cat([robust, weak], 1), y, 2)


def _non_robust_model() -> nn.Module:
    """A linear model that is accurate but relies only on the weak features."""
    model = nn.Linear(WEAK + 1, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.weight[1, 1:], model.weight[0, 1:] = 0.5, -0.5
        model.bias[1], model.bias[0] = -0.25 * WEAK, 0.25 * WEAK
    return model


def _robust_eval(model: nn.Module, data: ArrayData) -> tuple[float, float, float]:
    x_adv = pgd_linf(
        model, data.x, data.y, eps=EPS, step_size=0.025, steps=10, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        clean = float((model(data.x).argmax(1) == data.y).float().mean())
        logits_adv = model(x_adv)
        robust = float((logits_adv.argmax(1) == data.y).float().mean())
        return clean, robust, float(F.cross_entropy(logits_adv, data.y))


def _finetune(model: nn.Module, method: str, eps: float) -> None:
    adversarial_finetune(
        model,
        _data(128, 0),
        epochs=5,
        eps=eps,
        step_size=0.025,
        steps=5,
        method=method,
        lr=0.2,
        batch_size=32,
        generator=torch.Generator().manual_seed(0),
    )


@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_adversarial_finetuning_beats_plain_finetuning_under_pgd(method: str) -> None:
    test = _data(128, 1)
    base = _non_robust_model()
    assert _robust_eval(base, test)[:2] == (1.0, 0.0)
    plain, adv = copy.deepcopy(base), copy.deepcopy(base)
    _finetune(plain, "pgd", 0.0)  # eps=0: PGD-AT degenerates to plain fine-tuning with the same loop
    _finetune(adv, method, EPS)
    clean_p, robust_p, loss_p = _robust_eval(plain, test)
    clean_a, robust_a, loss_a = _robust_eval(adv, test)
    assert clean_a >= 0.9
    assert robust_a >= robust_p + 0.5
    assert loss_a < loss_p


def test_pgd_stays_in_the_ball_and_restores_flags() -> None:
    data = _data(16, 2)
    model = nn.Sequential(nn.Linear(WEAK + 1, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x_adv = pgd_linf(
        model, data.x, data.y, eps=EPS, step_size=0.03, steps=3, generator=torch.Generator().manual_seed(0)
    )
    x_tr = trades_adversary(model, data.x, eps=EPS, step_size=0.03, steps=3, generator=torch.Generator().manual_seed(0))
    for xa in (x_adv, x_tr):
        assert xa.shape == data.x.shape and xa.dtype == data.x.dtype
        assert float((xa - data.x).abs().max()) <= EPS + 1e-6
        assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    again = pgd_linf(
        model, data.x, data.y, eps=EPS, step_size=0.03, steps=3, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(x_adv, again)


def test_finetune_returns_history_and_validates() -> None:
    model = _non_robust_model()
    result = adversarial_finetune(
        model,
        _data(64, 0),
        epochs=2,
        eps=EPS,
        step_size=0.025,
        steps=2,
        lr=0.1,
        batch_size=32,
        method="trades",
        generator=torch.Generator().manual_seed(0),
    )
    assert result.method == "trades" and [r["epoch"] for r in result.history] == [1, 2]
    assert not model.training
    kwargs = dict(epochs=1, step_size=0.01, steps=1, lr=0.1, batch_size=32)
    with pytest.raises(ConfigError, match="255"):
        adversarial_finetune(model, _data(8, 0), eps=8, **kwargs)
    with pytest.raises(ConfigError, match="method"):
        adversarial_finetune(model, _data(8, 0), eps=0.1, method="fgsm", **kwargs)
