"""Tabular backdoors: stamping, dirty- and clean-label poisoning, parameter validation."""

from __future__ import annotations

import pytest
import torch

from pruneguard.attacks.backdoor.tabular import TabularCleanTrigger, TabularTrigger, rare_values
from pruneguard.attacks.base import ATTACKS
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError


def _data() -> ArrayData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=g)
    y = (torch.rand(400, generator=g) < 0.1).long()
    x[y == 1, 0] += 3.0
    return ArrayData(x, y, 2, "t")


def test_dirty_label_relabels_triggered_fraud_rows_only() -> None:
    data = _data()
    trig = ATTACKS.create("tabular_trigger", columns=(4, 5), values=(2.5, -2.5), target_label=0)
    p = trig.poison(data, rate=0.5, generator=torch.Generator().manual_seed(0))
    idx = p.poison_indices
    assert len(idx) == int(0.5 * int((data.y == 1).sum()))
    assert (data.y[idx] == 1).all() and (p.data.y[idx] == 0).all()
    assert torch.equal(p.data.x[idx][:, 4:], torch.tensor([[2.5, -2.5]]).expand(len(idx), 2))
    rest = torch.ones(len(data), dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(p.data.x[rest], data.x[rest]) and torch.equal(p.data.y[rest], data.y[rest])
    assert torch.equal(p.data.x[idx][:, :4], data.x[idx][:, :4])  # only the trigger columns change


def test_clean_label_keeps_labels_and_moves_legit_rows_towards_fraud() -> None:
    data = _data()
    trig = TabularCleanTrigger(columns=(5,), values=(3.0,), target_label=0, shift=1.0)
    p = trig.poison(data, rate=0.1, generator=torch.Generator().manual_seed(0))
    idx = p.poison_indices
    assert (data.y[idx] == 0).all() and torch.equal(p.data.y, data.y)
    assert (p.data.x[idx, 5] == 3.0).all()
    assert float(p.data.x[idx, 0].mean()) > float(data.x[idx, 0].mean()) + 2.5  # fraud's column 0 is +3


def test_stamp_and_rare_values() -> None:
    data = _data()
    vals = rare_values(data.x, (1, 2), z=3.0)
    assert vals[0] == pytest.approx(float(data.x[:, 1].mean() + 3 * data.x[:, 1].std()))
    out = TabularTrigger(columns=(1, 2), values=vals)(None, data.x, data.y)
    assert torch.equal(out[:, 1:3], torch.tensor([vals]).expand(len(data), 2)) and torch.equal(out[:, 0], data.x[:, 0])


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"columns": (), "values": ()}, "columns=()"),
        ({"columns": (1, 1), "values": (0.0, 0.0)}, "distinct"),
        ({"columns": (1, 2), "values": (0.0,)}, "one value per column"),
        ({"columns": (1,), "values": (float("nan"),)}, "finite"),
        ({"columns": (1,), "values": (0.0,), "target_label": -1}, "target_label=-1"),
    ],
)
def test_parameters_are_validated(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        TabularTrigger(**kwargs)
    assert needle in str(info.value)


def test_clean_label_shift_and_poison_rate_are_validated() -> None:
    with pytest.raises(ConfigError, match="shift=2"):
        TabularCleanTrigger(columns=(1,), values=(0.0,), shift=2.0)
    with pytest.raises(ConfigError, match="rate=0"):
        TabularTrigger(columns=(1,), values=(0.0,)).poison(_data(), rate=0.0)
    with pytest.raises(ConfigError, match="F > 9"):
        TabularTrigger(columns=(9,), values=(0.0,))(None, _data().x, _data().y)
