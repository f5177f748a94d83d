"""FGSM and PGD: they work (loss up, accuracy down, targets hit), agree with ART, and validate their inputs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.evasion import FGSM, PGD, fgsm, pgd, project_l2, project_linf
from pruneguard.errors import ConfigError


def _acc(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _loss(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_fgsm_and_pgd_increase_the_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch
    clean = _loss(model, x, y)
    assert _loss(model, fgsm(model, x, y, eps=0.1), y) > clean
    assert _loss(model, pgd(model, x, y, eps=0.1, step_size=0.025, steps=10, generator=_gen()), y) > clean


def test_pgd_is_at_least_as_strong_as_fgsm_and_monotone_in_eps(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch
    assert _acc(model, x, y) >= 0.95
    accs = [
        _acc(model, pgd(model, x, y, eps=e, step_size=e / 4, steps=10, generator=_gen()), y) for e in (0.05, 0.1, 0.2)
    ]
    assert accs[0] >= accs[1] >= accs[2]
    assert accs[2] <= 0.2  # an undefended model falls at a large budget
    assert accs[1] <= _acc(model, fgsm(model, x, y, eps=0.1), y)


@pytest.mark.parametrize("norm, eps", [("linf", 0.2), ("l2", 1.0)])
def test_targeted_pgd_reaches_the_target_more_often(
    model: nn.Module, batch: tuple[Tensor, Tensor], norm: str, eps: float
) -> None:
    x, y = batch
    target = (y + 1) % 4
    kw = {"eps": eps, "step_size": eps / 4, "steps": 10, "norm": norm, "generator": _gen()}
    with torch.no_grad():
        hit_targeted = (model(pgd(model, x, y, target=target, **kw)).argmax(1) == target).float().mean()
        hit_untargeted = (model(pgd(model, x, y, **kw)).argmax(1) == target).float().mean()
    assert float(hit_targeted) >= 0.8 > float(hit_untargeted) + 0.2


def test_fgsm_targeted_moves_towards_the_target(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch
    target = (y + 1) % 4
    assert _loss(model, fgsm(model, x, y, eps=0.1, target=target), target) < _loss(model, x, target)


def test_restarts_never_weaken_pgd(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch
    one = pgd(model, x, y, eps=0.1, step_size=0.025, steps=5, restarts=1, generator=_gen(3))
    three = pgd(model, x, y, eps=0.1, step_size=0.025, steps=5, restarts=3, generator=_gen(3))
    with torch.no_grad():  # the first restart is the single run; later ones only replace unfooled examples
        fooled_one, fooled_three = model(one).argmax(1) != y, model(three).argmax(1) != y
    assert bool((fooled_three | ~fooled_one).all())
    assert float((three - x).abs().max()) <= 0.1 + 1e-6


def test_pgd_works_under_no_grad_and_keeps_float64(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch
    model64 = copy.deepcopy(model).double()
    with torch.no_grad():
        x_adv = pgd(model64, x.double(), y, eps=0.1, step_size=0.025, steps=3, generator=_gen())
    assert x_adv.dtype == torch.float64
    assert _acc(model64, x_adv, y) < _acc(model64, x.double(), y)


@pytest.mark.parametrize("norm, eps, step", [("linf", 0.1, 0.025), ("l2", 0.5, 0.125)])
@pytest.mark.parametrize("targeted", [False, True])
def test_early_stop_is_never_weaker_and_stays_in_the_ball(
    model: nn.Module, batch: tuple[Tensor, Tensor], norm: str, eps: float, step: float, targeted: bool
) -> None:
    x, y = batch
    target = (y + 1) % 4 if targeted else None
    kw = {"eps": eps, "step_size": step, "steps": 10, "norm": norm, "random_start": False, "target": target}
    full = pgd(model, x, y, **kw)
    early = pgd(model, x, y, early_stop=True, **kw)
    with torch.no_grad():
        pred_full, pred_early = model(full).argmax(1), model(early).argmax(1)
    ok_full = pred_full == target if targeted else pred_full != y
    ok_early = pred_early == target if targeted else pred_early != y
    assert bool((ok_early | ~ok_full).all())  # every example the full run fools, the early-stopped run fools too
    assert bool(ok_early.any()) and not torch.equal(early, full)  # some stopped early, so the outputs differ
    assert bool(((early >= 0) & (early <= 1)).all())
    dist = (early - x).flatten(1).abs().amax(1) if norm == "linf" else (early - x).flatten(1).norm(dim=1)
    assert float(dist.max()) <= eps + 1e-5
    with torch.no_grad():  # examples never fooled ran every step, exactly as without early stopping
        never = ~ok_early & ~ok_full
    if bool(never.any()):
        torch.testing.assert_close(early[never], full[never])


@pytest.mark.parametrize("norm, eps, step", [("linf", 0.1, 0.025), ("l2", 0.5, 0.125)])
def test_pgd_agrees_with_art(
    model: nn.Module, batch: tuple[Tensor, Tensor], norm: str, eps: float, step: float
) -> None:
    """Robust accuracy within 1 point of ART's ProjectedGradientDescentPyTorch (both without random start)."""
    pgd_art = pytest.importorskip("art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_pytorch")
    from art.estimators.classification import PyTorchClassifier

    x, y = batch
    classifier = PyTorchClassifier(
        model=copy.deepcopy(model),
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=4,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    art_attack = pgd_art.ProjectedGradientDescentPyTorch(
        classifier,
        norm=np.inf if norm == "linf" else 2,
        eps=eps,
        eps_step=step,
        max_iter=10,
        num_random_init=0,
        batch_size=len(x),
        verbose=False,
    )
    x_art = torch.from_numpy(art_attack.generate(x.numpy(), y.numpy()))
    x_ours = pgd(model, x, y, eps=eps, step_size=step, steps=10, norm=norm, random_start=False)
    ours, theirs = _acc(model, x_ours, y), _acc(model, x_art, y)
    assert ours < _acc(model, x, y)
    assert abs(ours - theirs) <= 0.01


@pytest.mark.parametrize("norm, eps", [("linf", 0.5), ("l2", 1.5)])
def test_tabular_inputs_with_other_bounds(norm: str, eps: float) -> None:
    """(N, F) standardised features in [-3, 3], and per-feature bounds given as a tensor."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(64, 6, generator=_gen(1)).clamp(-3, 3)
    with torch.no_grad():
        y = mlp(x).argmax(1)
    x_adv = pgd(
        mlp, x, y, eps=eps, step_size=eps / 4, steps=10, norm=norm, clip_min=-3.0, clip_max=3.0, generator=_gen()
    )
    delta = x_adv - x
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5 and float(x_adv.abs().max()) <= 3.0
    assert _acc(mlp, x_adv, y) < 1.0
    hi = torch.full((6,), 3.0)
    hi[0] = float(x[:, 0].max())  # feature 0 may not increase past its observed max
    x_box = pgd(mlp, x, y, eps=eps, step_size=eps / 4, steps=5, norm=norm, clip_min=-3.0, clip_max=hi)
    assert bool((x_box <= hi).all()) and bool((x_box >= -3.0).all())
    x_box3 = pgd(
        mlp,
        x,
        y,
        eps=eps,
        step_size=eps / 4,
        steps=5,
        norm=norm,
        clip_min=-3.0,
        clip_max=hi,
        restarts=2,
        generator=_gen(),
    )
    assert bool((x_box3 <= hi).all())


def test_projections() -> None:
    delta = torch.tensor([[3.0, -4.0], [0.1, 0.0]])
    assert torch.equal(project_linf(delta, 0.5), torch.tensor([[0.5, -0.5], [0.1, 0.0]]))
    assert torch.allclose(project_l2(delta, 1.0), torch.tensor([[0.6, -0.8], [0.1, 0.0]]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"eps": 8}, r"eps=8 is outside \[0, 1\].*did you mean 8/255"),
        ({"eps": -0.1}, r"eps=-0.1 is invalid"),
        ({"norm": "l1"}, r"norm='l1' is not supported; accepted: linf, l2"),
        ({"steps": 0}, r"steps=0 is invalid; accepted: an integer >= 1"),
        ({"step_size": 0}, r"step_size=0 is invalid"),
        ({"restarts": 3, "random_start": False}, r"restarts=3 with random_start=False"),
        ({"clip_min": 1.0, "clip_max": 0.0}, r"clip_min=1.0 and clip_max=0.0"),
    ],
)
def test_pgd_rejects_bad_hyperparameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PGD(**kwargs)  # type: ignore[arg-type]


def test_fgsm_rejects_bad_eps() -> None:
    with pytest.raises(ConfigError, match="did you mean 16/255"):
        FGSM(eps=16)


def test_attacks_reject_bad_inputs(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch
    attack = PGD(eps=0.1, step_size=0.05, steps=1)
    with pytest.raises(TypeError, match="floating-point"):
        attack(model, (x * 255).to(torch.uint8), y)
    with pytest.raises(ConfigError, match=r"outside \[clip_min, clip_max\].*scaled to \[0, 1\]"):
        attack(model, x * 255, y)
    with pytest.raises(ConfigError, match=r"y has shape \(3,\)"):
        attack(model, x, y[:3])
    with pytest.raises(ConfigError, match="target has shape"):
        attack(model, x, y, target=y.float())


def test_frozen_dataclass() -> None:
    attack = PGD()
    with pytest.raises(AttributeError):
        attack.eps = 0.5  # type: ignore[misc]
    assert attack == PGD(eps=8 / 255)


def test_attack_job_pgd_stops_early_but_transfer_runs_every_step(model: nn.Module) -> None:
    from pruneguard.workflows.attack import build_attack

    direct = build_attack("pgd", eps=0.1, norm="linf", options={"steps": 5})
    transfer = build_attack("transfer", eps=0.1, norm="linf", options={"steps": 5}, source=model)
    assert direct.early_stop is True
    assert transfer.attack.early_stop is False and transfer.attack.steps == 5
