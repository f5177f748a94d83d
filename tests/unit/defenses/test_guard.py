"""The repair guard: a repair is scaled back along the line to the pruned model until the accuracy fits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruneguard.defenses.guard import interpolate_state, weaken_to_fit


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_interpolation_moves_floats_and_switches_integers() -> None:
    a, b = _net().state_dict(), {k: v.clone() for k, v in _net().state_dict().items()}
    for k in b:
        if b[k].is_floating_point():
            b[k] += 1.0
        else:
            b[k] += 7
    mid = interpolate_state(a, b, 0.25)
    key = "0.weight"
    assert torch.allclose(mid[key], a[key] + 0.25)
    assert torch.equal(mid["1.num_batches_tracked"], b["1.num_batches_tracked"])
    assert torch.equal(interpolate_state(a, b, 0.0)["1.num_batches_tracked"], a["1.num_batches_tracked"])
    with pytest.raises(ValueError, match="outside"):
        interpolate_state(a, b, 1.5)


def test_a_repair_that_fits_is_kept_and_one_that_does_not_is_scaled_back() -> None:
    model = _net()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight += 4.0  # "the repair": moves the first layer by 4
    distance = lambda m: float((m[0].weight.detach() - start["0.weight"]).abs().mean())  # noqa: E731
    # accuracy falls with the distance moved: 1 at the start, 0 at the full repair
    measure = lambda m: {"accuracy": 1.0 - distance(m) / 4.0}  # noqa: E731

    def above(floor: float):  # noqa: ANN202
        return lambda figures: figures["accuracy"] >= floor

    kept = weaken_to_fit(model, start, measure, above(0.0))
    assert kept["scale"] == 1.0 and len(kept["tried"]) == 1 and kept["tried"][0]["accuracy"] == 0.0
    res = weaken_to_fit(model, start, measure, above(0.45))
    assert res["scale"] == 0.5 and [t["scale"] for t in res["tried"]] == [1.0, 0.75, 0.5]
    assert distance(model) == pytest.approx(2.0)
    model.load_state_dict({k: v.clone() for k, v in start.items()})
    with torch.no_grad():
        model[0].weight += 4.0
    undone = weaken_to_fit(model, start, measure, above(1.5))  # unreachable: the repair is undone
    assert undone["scale"] == 0.0 and distance(model) == 0.0


def test_every_limit_must_hold_and_every_figure_is_recorded() -> None:
    """Two figures, two limits: the scale kept is the first at which both hold, and each point tried records
    both figures."""
    model = _net()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight += 4.0
    moved = lambda m: float((m[0].weight.detach() - start["0.weight"]).abs().mean()) / 4.0  # noqa: E731
    # accuracy would allow 0.75 of the repair; the second figure only 0.25
    measure = lambda m: {"accuracy": 1.0 - 0.3 * moved(m), "kept": 1.0 - moved(m)}  # noqa: E731
    res = weaken_to_fit(model, start, measure, lambda f: f["accuracy"] >= 0.75 and f["kept"] >= 0.7)
    assert res["scale"] == 0.25
    assert [round(t["kept"], 6) for t in res["tried"]] == [0.0, 0.25, 0.5, 0.75]
    assert all(set(t) == {"scale", "accuracy", "kept"} for t in res["tried"])
