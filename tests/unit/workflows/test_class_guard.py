"""The class guard of a repair (``min_suspect_kept``): a repair that takes the suspected class's own validation
images away from it is scaled back, whatever it does to the accuracy."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.defenses.guard import weaken_to_fit
from pruneguard.recipes import Recipe, get_recipe
from pruneguard.workflows.purify import _repair_limits


def _setup() -> tuple[nn.Linear, ArrayData]:
    """A linear model on 40 points: its bias decides how many of them land in class 0."""
    x = torch.linspace(-1, 1, 40).unsqueeze(1)
    y = (x[:, 0] > 0).long()  # class 1 right of 0, class 0 left of it
    model = nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model.bias.zero_()
    return model, ArrayData(x=x, y=y, num_classes=2)


def test_a_repair_that_unlearns_the_class_itself_is_scaled_back_until_the_class_keeps_its_images() -> None:
    model, validation = _setup()
    recipe = Recipe(max_acc_drop=None, min_suspect_kept=0.6)  # the accuracy is not judged: only the class
    limits = _repair_limits(recipe, model, validation, suspect=0, before=1.0)
    assert limits is not None and limits.record() == {"floor": 0.0, "min_suspect_kept": 0.6, "suspect_images": 20}
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # "the repair": moves the boundary to -0.8, taking 80% of class 0's points into class 1
        model.bias.copy_(torch.tensor([-0.8, 0.8]))
    res = weaken_to_fit(model, start, limits.measure, limits.fits)
    first = res["tried"][0]
    assert first["scale"] == 1.0 and first["suspect_kept"] == pytest.approx(0.2, abs=0.03) and not limits.fits(first)
    # at scale s the boundary sits at -0.8 s: 0.75 keeps 40% of class 0's points, 0.5 keeps 60%
    assert res["scale"] == 0.5 and [t["scale"] for t in res["tried"]] == [1.0, 0.75, 0.5]
    assert res["tried"][-1]["suspect_kept"] >= 0.6 and float(model.bias.detach()[0]) == pytest.approx(-0.4)


def test_no_class_limit_and_no_accuracy_limit_means_no_guard() -> None:
    model, validation = _setup()
    assert _repair_limits(Recipe(max_acc_drop=None), model, validation, suspect=0, before=1.0) is None
    assert _repair_limits(Recipe(), model, None, suspect=0, before=None) is None
    limits = _repair_limits(Recipe(max_acc_drop=0.1), model, validation, suspect=0, before=1.0)
    assert limits is not None and "suspect_kept" not in limits.measure(model)  # not asked for: not measured


def test_the_class_limit_is_a_recipe_field() -> None:
    assert get_recipe("default").min_suspect_kept == 0.6
    assert "min_suspect_kept" not in get_recipe("paper").to_dict()  # None, the field's default: not written
    with pytest.raises(ValidationError, match="min_suspect_kept"):
        Recipe(min_suspect_kept=1.5)
    with pytest.raises(ValidationError, match="validation_fraction"):
        Recipe(validation_fraction=0.0, max_acc_drop=None, min_suspect_kept=0.5)
