"""The change guard of a repair (``max_changed``): the repair is judged by the share of validation predictions it
changed from the original's, right or wrong, instead of by its accuracy."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.defenses.guard import weaken_to_fit
from pruneguard.recipes import Recipe, get_recipe
from pruneguard.reports.verdict import purify_verdict
from pruneguard.workflows.purify import _repair_limits


def _setup() -> tuple[nn.Linear, ArrayData]:
    """A linear model on 40 points between -1 and 1, its boundary at 0; the labels put the boundary at 0.5, so the
    original is wrong on the 10 points between 0 and 0.5 and moving the boundary right gains accuracy."""
    x = torch.linspace(-1, 1, 40).unsqueeze(1)
    y = (x[:, 0] > 0.5).long()
    model = nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model.bias.zero_()
    return model, ArrayData(x=x, y=y, num_classes=2)


def test_a_repair_that_changes_too_many_predictions_is_scaled_back_even_when_it_gains_accuracy() -> None:
    model, validation = _setup()
    recipe = Recipe(max_acc_drop=0.02, max_changed=0.1)
    limits = _repair_limits(recipe, model, validation, suspect=None, before=0.75)
    assert limits is not None and limits.record() == {"floor": 0.73, "max_changed": 0.1}
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # "the repair": the boundary to 0.8, changing the 16 points between 0 and 0.8
        model.bias.copy_(torch.tensor([0.8, -0.8]))
    res = weaken_to_fit(model, start, limits.measure, limits.fits)
    first = res["tried"][0]
    assert first["accuracy"] > 0.75 and first["changed"] == pytest.approx(16 / 40)  # more accurate, yet refused
    assert not limits.fits(first)
    # at scale s the boundary sits at 0.8 s: 0.25 moves it to 0.2, changing the 4 points between 0 and 0.2
    assert res["scale"] == 0.25 and [t["scale"] for t in res["tried"]] == [1.0, 0.75, 0.5, 0.25]
    assert res["tried"][-1]["changed"] == pytest.approx(4 / 40)


def test_the_change_limit_takes_the_place_of_the_accuracy_floor_in_the_repair() -> None:
    model, validation = _setup()
    # the floor 0.9 is above what the original reaches: the accuracy guard would refuse the unchanged model
    by_accuracy = _repair_limits(Recipe(max_acc_drop=0.02), model, validation, suspect=None, before=0.92)
    by_change = _repair_limits(Recipe(max_acc_drop=0.02, max_changed=0.0), model, validation, suspect=None, before=0.92)
    assert by_accuracy is not None and by_change is not None
    assert not by_accuracy.fits(by_accuracy.measure(model))
    assert by_change.fits(by_change.measure(model)) and by_change.measure(model)["changed"] == 0.0
    assert "changed" not in by_accuracy.measure(model)  # not asked for: not measured


def test_the_change_limit_is_a_recipe_field_written_only_when_set() -> None:
    assert "max_changed" not in get_recipe("default").to_dict()  # unset: recipes hash as they did before it
    assert Recipe(max_changed=0.07).to_dict()["max_changed"] == 0.07
    with pytest.raises(ValidationError, match="max_changed"):
        Recipe(max_changed=1.5)
    with pytest.raises(ValidationError, match="validation_fraction"):
        Recipe(validation_fraction=0.0, max_acc_drop=None, max_changed=0.07)


def test_the_verdict_names_the_change_guard() -> None:
    guard = {"floor": 0.88, "max_changed": 0.07, "scale": 0.5}
    tried = [{"scale": 1.0, "accuracy": 0.9, "changed": 0.1}]
    report = {
        "recipe": "default",
        "before": {"accuracy": 0.9, "validation_accuracy": 0.9, "asr": 0.99},
        "after": {"accuracy": 0.89, "validation_accuracy": 0.895, "asr": 0.004},
        "suspect": {"target": 0, "evidence": True, "reasons": ["the scan scored 0.62 (cut 0.41)"]},
        "steps": ["anp", "unlearn"],
        "pruned_neurons": 14,
        "total_neurons": 224,
        "repair": {"method": "unlearn", "triggers": [{}, {}], "target": 0},
        "guard": {**guard, "rounds": [{"round": 1, "scale": 0.5, "tried": tried}]},
        "validation_drop": 0.005,
    }
    s = purify_verdict(report, 0.02, True)["sentence"]
    assert "round 1 scaled back to 0.5 by the change guard (at most 7.0% of the validation predictions changed)" in s
    undone = {
        **report,
        "pruned_neurons": 0,
        "guard": {**guard, "scale": 0.0, "rounds": [{"round": 1, "scale": 0.0, "tried": tried}]},
    }
    v = purify_verdict(undone, 0.02, True)
    assert (
        v["status"] == "failed"
        and "the change limit (at most 7.0% of the validation predictions changed)" in v["sentence"]
    )
