"""Constrained tabular evasion: only positive rows move, immutable columns never, every constraint holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pruneguard.attacks.base import ATTACKS
from pruneguard.attacks.evasion.constraints import TabularConstraints, load_constraints
from pruneguard.attacks.evasion.tabular import PositiveEvasion
from pruneguard.errors import ConfigError
from pruneguard.models.zoo import MLP

NAMES = ["age", "amount", "n_items", "c_a", "c_b", "c_c", "v1", "v2"]


def _setup() -> tuple[MLP, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = 64
    x = torch.randn(n, 8, generator=g)
    x[:, 1] = x[:, 1].abs() * 50  # amount >= 0
    x[:, 2] = torch.randint(0, 5, (n,), generator=g).float()
    x[:, 3:6] = torch.nn.functional.one_hot(torch.randint(0, 3, (n,), generator=g), 3).float()
    y = (torch.rand(n, generator=g) < 0.3).long()
    torch.manual_seed(0)
    model = MLP(2, (8,), x.mean(0).tolist(), x.std(0).tolist(), hidden=(16,)).eval()
    return model, x, y


def _constraints(tmp_path: Path) -> TabularConstraints:
    path = tmp_path / "c.yaml"
    path.write_text(
        "immutable: [age]\nbounds: {amount: [0, null]}\ninteger: [n_items]\ncategorical: {cat: [c_a, c_b, c_c]}\n"
    )
    return load_constraints(path, NAMES)


def test_only_positive_rows_change_and_constraints_hold(tmp_path: Path) -> None:
    model, x, y = _setup()
    c = _constraints(tmp_path)
    attack = PositiveEvasion(positive=1, eps=3.0, steps=10, constraints=c)
    x_adv = attack(model, x, y, generator=torch.Generator().manual_seed(1))
    pos = y == 1
    assert torch.equal(x_adv[~pos], x[~pos])  # negatives untouched
    assert (x_adv[pos] != x[pos]).any()  # the attack did move positives
    assert torch.equal(x_adv[:, 0], x[:, 0])  # immutable column, bit for bit
    assert (x_adv[:, 1] >= 0).all()
    assert torch.equal(x_adv[:, 2], x_adv[:, 2].round())
    assert torch.equal(x_adv[:, 3:6].sum(1), torch.ones(len(x))) and set(x_adv[:, 3:6].unique().tolist()) <= {0, 1}
    std = model.normalize.std.detach().flatten()
    delta = ((x_adv - x).abs() / std)[:, [0, 1, 6, 7]]  # the continuous columns stay in the eps ball
    assert float(delta.max()) <= 3.0 + 1e-4


def test_evasion_lowers_the_positive_score_and_is_reproducible(tmp_path: Path) -> None:
    model, x, y = _setup()
    attack = ATTACKS.create("positive_evasion", positive=1, eps=1.0, steps=10)
    a = attack(model, x, y, generator=torch.Generator().manual_seed(3))
    b = attack(model, x, y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with torch.no_grad():
        before = torch.softmax(model(x[y == 1]), 1)[:, 1]
        after = torch.softmax(model(a[y == 1]), 1)[:, 1]
    assert float(after.mean()) < float(before.mean())
    assert not model.training


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("immutable: [nope]\n", "unknown columns ['nope']"),
        ("bounds: {amount: [0]}\n", "must be [low, high]"),
        ("bounds: {amount: [5, 1]}\n", "low > high"),
        ("speed: 3\n", "unknown keys ['speed']"),
        ("categorical: {cat: [c_a]}\n", "at least 2 columns"),
        ("immutable: [age\n", "not readable YAML"),
    ],
)
def test_bad_constraint_files_fail_with_one_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load_constraints(path, NAMES)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_attack_parameters_are_validated() -> None:
    with pytest.raises(ConfigError, match="eps=0"):
        PositiveEvasion(eps=0)
    with pytest.raises(ConfigError, match="steps=0"):
        PositiveEvasion(steps=0)
    model, x, y = _setup()
    with pytest.raises(ConfigError, match="cover 3 features"):
        PositiveEvasion(constraints=TabularConstraints(num_features=3))(model, x, y)
