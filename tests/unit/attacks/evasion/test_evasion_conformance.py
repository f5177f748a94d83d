"""Conformance suite over every registered evasion attack (in the spirit of scikit-learn's check_estimator)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from pruneguard.attacks import ATTACKS, Attack

EPS = {"linf": 0.3, "l2": 2.0}  # large enough that AutoAttack fools every example in its first restart


def _pgd_params(norm: str) -> dict[str, Any]:
    return {"eps": EPS[norm], "step_size": EPS[norm] / 4, "steps": 5, "norm": norm}


# name -> (norm -> registry parameters); the surrogate model is passed for "transfer".
PARAMS: dict[str, Callable[[str | None, nn.Module], dict[str, Any]]] = {
    "fgsm": lambda norm, src: {"eps": EPS["linf"]},
    "pgd": lambda norm, src: _pgd_params(norm),
    "autoattack": lambda norm, src: {"eps": EPS[norm], "norm": norm, "version": "custom", "attacks": ["apgd-ce"]},
    "square": lambda norm, src: {"eps": EPS[norm], "norm": norm, "n_queries": 20},
    "transfer": lambda norm, src: {"source": src, "attack": ATTACKS.create("pgd", **_pgd_params(norm))},
    "patch": lambda norm, src: {"patch": torch.rand(1, 3, 3, generator=torch.Generator().manual_seed(7))},
}
CASES = [
    ("fgsm", "linf"),
    ("pgd", "linf"),
    ("pgd", "l2"),
    ("autoattack", "linf"),
    ("autoattack", "l2"),
    ("square", "linf"),
    ("square", "l2"),
    ("transfer", "linf"),
    ("transfer", "l2"),
    ("patch", None),
]
RETURN_CLEAN_ON_FAILURE = {"autoattack", "square"}  # pyautoattack keeps x where it does not fool the model
IDS = [f"{name}-{norm}" if norm else name for name, norm in CASES]


def _flags(model: nn.Module) -> tuple[list[bool], list[bool]]:
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def outcome(request: pytest.FixtureRequest, _trained: nn.Module, motif_data: tuple[Tensor, ...]) -> SimpleNamespace:
    """Run one attack twice with the same generator on a model left in train mode, and record everything."""
    name, norm = request.param
    model, surrogate = copy.deepcopy(_trained).train(), copy.deepcopy(_trained).train()
    model[0].bias.requires_grad_(False)  # mixed flags must come back exactly as they were
    before = {"model": _flags(model), "surrogate": _flags(surrogate)}
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = motif_data[2][:16].clone(), motif_data[3][:16]
    x_orig = x.clone()
    attack = ATTACKS.create(name, **PARAMS[name](norm, surrogate))
    outs = [attack(model, x, y, generator=torch.Generator().manual_seed(0)) for _ in range(2)]
    return SimpleNamespace(
        name=name,
        norm=norm,
        attack=attack,
        model=model,
        surrogate=surrogate,
        before=before,
        buffers=buffers,
        x=x,
        x_orig=x_orig,
        y=y,
        out=outs[0],
        out2=outs[1],
    )


def test_every_registered_evasion_attack_has_a_case() -> None:
    evasion = {n for n in ATTACKS.names() if ATTACKS.meta(n).get("kind") == "evasion"}
    assert evasion == set(PARAMS) == {name for name, _ in CASES}


def test_follows_the_attack_protocol(outcome: SimpleNamespace) -> None:
    assert isinstance(outcome.attack, Attack)
    assert outcome.attack.name == outcome.name


def test_preserves_shape_dtype_device(outcome: SimpleNamespace) -> None:
    out, x = outcome.out, outcome.x
    assert (out.shape, out.dtype, out.device) == (x.shape, x.dtype, x.device)
    assert not out.requires_grad


def test_stays_in_unit_box(outcome: SimpleNamespace) -> None:
    assert float(outcome.out.min()) >= 0.0 and float(outcome.out.max()) <= 1.0


def test_stays_in_eps_ball(outcome: SimpleNamespace) -> None:
    delta = (outcome.out - outcome.x).flatten(1)
    if outcome.name == "patch":  # a patch is unbounded inside its 3x3 area and changes nothing outside it
        assert int((delta != 0).sum(dim=1).max()) <= 9
        return
    if outcome.norm == "linf":
        assert float(delta.abs().max()) <= EPS["linf"] + 1e-6
    else:
        assert float(delta.norm(dim=1).max()) <= EPS["l2"] + 1e-5


def test_changes_the_input(outcome: SimpleNamespace) -> None:
    changed = (outcome.out != outcome.x).flatten(1).any(dim=1)
    if outcome.name in RETURN_CLEAN_ON_FAILURE:  # only fooled examples may differ from x
        with torch.no_grad():
            fooled = outcome.model.eval()(outcome.out).argmax(1) != outcome.y
        outcome.model.train()
        assert bool((fooled | ~changed).all())
    else:
        assert bool(changed.any())


def test_reproducible_with_a_fixed_generator(outcome: SimpleNamespace) -> None:
    assert torch.equal(outcome.out, outcome.out2)


def test_restores_training_and_requires_grad_flags(outcome: SimpleNamespace) -> None:
    assert _flags(outcome.model) == outcome.before["model"]
    assert _flags(outcome.surrogate) == outcome.before["surrogate"]
    assert all(p.grad is None for p in outcome.model.parameters())
    assert all(p.grad is None for p in outcome.surrogate.parameters())


def test_leaves_model_and_input_untouched(outcome: SimpleNamespace) -> None:
    state = outcome.model.state_dict()  # BatchNorm running stats: the attack ran in eval mode
    assert all(torch.equal(state[k], v) for k, v in outcome.buffers.items())
    assert torch.equal(outcome.x, outcome.x_orig)
