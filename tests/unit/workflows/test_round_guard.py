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


def test_a_round_the_class_guard_refuses_runs_again_without_the_suppression(monkeypatch) -> None:
    """``repair.suppress_yields``: the first round's full repair keeps too few suspect images, so it runs again from
    where it started with no suppression, and every later round goes without it."""
    from types import SimpleNamespace

    import torch
    from torch import nn

    from pruneguard.data.tensors import ArrayData
    from pruneguard.recipes import get_recipe
    from pruneguard.scan.reversal import ReversedTrigger
    from pruneguard.workflows import purify as pw

    shares: list[float] = []

    def fake_unlearn(model, data, trigs, cfg, **kw):
        shares.append(cfg.distill_suppress)
        with torch.no_grad():
            model.weight.add_(1.0)  # every try moves the weights
        return 0.0

    def fake_reverse(model, data, target, cfg, generator=None, kind="patch"):
        return ReversedTrigger(target, torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), 1.0, 0.0, 0.0, kind)

    monkeypatch.setattr(pw, "unlearn_", fake_unlearn)
    monkeypatch.setattr(pw, "reverse_trigger", fake_reverse)
    monkeypatch.setattr(pw, "trigger_png", lambda *a, **k: "")
    tries: list[float] = []

    def guard(model, before):  # the class guard refuses the first try (model moved by one), keeps the others
        moved = round(float(model.weight.detach().flatten()[0] - before["weight"].flatten()[0]), 4)
        tries.append(moved)
        kept = 0.3 if len(tries) == 1 else 0.9
        return {"scale": 0.0 if kept < 0.6 else 1.0, "tried": [{"scale": 1.0, "accuracy": 0.9, "suspect_kept": kept}]}

    recipe = get_recipe("default").model_copy(
        update={"repair": get_recipe("default").repair.model_copy(update={"suppress_yields": True, "rounds": 3})}
    )
    cfg = SimpleNamespace(recipe=recipe, seed=0)
    model = nn.Linear(4, 2)
    data = ArrayData(torch.zeros(8, 1, 2, 2), torch.tensor([0, 1] * 4), 2)

    def refused(figures) -> bool:
        return figures["suspect_kept"] < 0.6

    out = pw._unlearn(cfg, model, data, 1, teacher=None, lr=0.01, guard=guard, yields=refused)
    assert shares == [0.75, 0.0, 0.0, 0.0]  # round 1 with it, round 1 again and rounds 2-3 without
    assert tries == [1.0, 1.0, 1.0, 1.0]  # the second try started from where round 1 started, not after the first
    rounds = [(r["round"], r["suppress"], r["scale"]) for r in out["guard_rounds"]]
    assert rounds == [(1, 0.75, 0.0), (1, 0.0, 1.0), (2, 0.0, 1.0), (3, 0.0, 1.0)]
    shares.clear()
    tries.clear()
    pw._unlearn(cfg, nn.Linear(4, 2), data, 1, teacher=None, lr=0.01, guard=guard)  # no yields: as before
    assert shares[0] == 0.75 and 0.0 not in shares


def test_suppress_yields_needs_the_class_guard_and_a_round_guard() -> None:
    from pruneguard.recipes import Recipe, get_recipe

    base = get_recipe("default").to_dict()
    assert "suppress_yields" not in base["repair"]  # a later field: kept hashes hold
    Recipe(**{**base, "repair": {**base["repair"], "suppress_yields": True}})
    for change in ({"min_suspect_kept": None}, {"repair": {**base["repair"], "guard": "end"}},
                   {"repair": {**base["repair"], "suppress": 0.0}}):  # fmt: skip
        data = {**base, **change}
        data["repair"] = {**data["repair"], "suppress_yields": True}
        with pytest.raises(ValidationError, match="suppress_yields"):
            Recipe(**data)
