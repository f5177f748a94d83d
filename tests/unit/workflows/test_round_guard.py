"""The record of an unlearning repair judged round by round (``repair.guard=round``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pruneguard.recipes import RepairStep
from pruneguard.workflows.purify import _rounds_summary


def _round(n: int, scale: float) -> dict[str, object]:
    return {"round": n, "scale": scale, "tried": [{"scale": 1.0, "accuracy": 0.8 + n / 100}]}


def test_the_summary_keeps_what_the_kept_rounds_were_given() -> None:
    whole = _rounds_summary([_round(1, 1.0), _round(2, 1.0)])
    assert whole["scale"] == 1.0 and whole["tried"] == _round(2, 1.0)["tried"] and len(whole["rounds"]) == 2
    # a later round undone keeps the earlier rounds: the repair is not undone
    later = _rounds_summary([_round(1, 1.0), _round(2, 0.5), _round(3, 0.0)])
    assert later["scale"] == 0.5 and later["tried"] == _round(3, 0.0)["tried"]
    # the first round undone: nothing of the repair kept, which the retries and the verdict read as scale 0
    assert _rounds_summary([_round(1, 0.0)])["scale"] == 0.0
    # backoff: the first round undone, a later one (at a lower rate) kept
    assert _rounds_summary([_round(1, 0.0), _round(2, 0.25), _round(3, 1.0)])["scale"] == 0.25
    assert _rounds_summary([_round(1, 0.0), _round(2, 0.0)])["scale"] == 0.0


def test_the_round_guard_is_a_recipe_field_that_kept_recipes_do_not_write() -> None:
    assert RepairStep(method="unlearn", guard="round").guard == "round"
    assert "guard" not in RepairStep(method="unlearn").model_dump()  # "end", the default: kept hashes hold
    assert RepairStep(method="finetune", guard="round").model_dump()["guard"] == "round"  # one round: the end
    assert RepairStep(method="unlearn", guard="backoff", retries=2).model_dump()["guard"] == "backoff"
    with pytest.raises(ValidationError, match="guard"):
        RepairStep(method="unlearn", guard="each")
