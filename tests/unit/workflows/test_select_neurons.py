"""purify's pruning rule: threshold / count / fraction, and the validation-accuracy cap over any of them."""

from __future__ import annotations

import pytest
import torch

from pruneguard.recipes import Recipe, SelectStep
from pruneguard.workflows.purify import select_neurons

MASKS = torch.tensor([0.9, 0.1, 0.2, 0.0, 0.5, 0.15])  # pruning order: 3, 1, 5, 2, 4, 0
# validation accuracy after pruning the 0..5 smallest masks
CURVE = [
    {"pruned": k, "clean_accuracy": a, "kl": d}
    for k, (a, d) in enumerate(zip([0.90, 0.90, 0.89, 0.85, 0.80, 0.70], [0.0, 0.03, 0.05, 0.2, 0.3, 0.5], strict=True))
]


def _recipe(max_acc_drop: float | None = None, **select: object) -> Recipe:
    return Recipe(
        validation_fraction=0.2,
        max_acc_drop=max_acc_drop,
        select=SelectStep(**select),
        suspect={"method": "none", "require_evidence": False},
    )


def test_the_threshold_alone_prunes_every_mask_under_it() -> None:
    idx, rule, reached = select_neurons(_recipe(threshold=0.2), MASKS, CURVE)
    assert idx.tolist() == [3, 1, 5, 2] and rule == "threshold=0.2" and reached == pytest.approx(0.2)
    idx, _, _ = select_neurons(_recipe(0.0, threshold=0.2, capped=False), MASKS, CURVE)
    assert idx.tolist() == [3, 1, 5, 2]  # no cap: the guard's limit does not stop the rule


def test_the_cap_stops_the_rule_where_validation_accuracy_falls_too_far() -> None:
    idx, rule, reached = select_neurons(_recipe(0.02, threshold=0.2), MASKS, CURVE)
    assert idx.tolist() == [3, 1]  # pruning a third neuron loses 0.05 > 0.02
    assert "capped at 2" in rule and reached == pytest.approx(0.1)
    # a cap the rule never reaches changes nothing
    assert select_neurons(_recipe(0.2, threshold=0.2), MASKS, CURVE)[0].tolist() == [3, 1, 5, 2]
    assert select_neurons(_recipe(0.06, rule="count", count=5), MASKS, CURVE)[0].tolist() == [3, 1, 5]
    assert select_neurons(_recipe(None, rule="fraction", fraction=0.5), MASKS, CURVE)[0].tolist() == [3, 1, 5]


def test_the_divergence_cap_stops_pruning_that_validation_accuracy_does_not_see() -> None:
    # the accuracy guard admits two neurons; their outputs moved 0.05 nats from the original's
    idx, rule, _ = select_neurons(_recipe(0.02, threshold=0.2, max_kl=0.04), MASKS, CURVE)
    assert idx.tolist() == [3] and rule.endswith("capped at 1 (divergence from the original <= 0.04 nats)")
    assert select_neurons(_recipe(0.02, threshold=0.2, max_kl=0.06), MASKS, CURVE)[0].tolist() == [3, 1]
    assert select_neurons(_recipe(None, threshold=0.2, max_kl=0.0), MASKS, CURVE)[0].tolist() == []
