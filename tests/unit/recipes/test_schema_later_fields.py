"""Recipe fields added after results were kept serialise only when set away from their default."""

from __future__ import annotations

from pruneguard.recipes import Recipe, get_recipe
from pruneguard.recipes.schema import RepairStep, SelectStep


def test_later_fields_are_written_only_when_they_differ_from_their_default() -> None:
    paper = get_recipe("paper").to_dict()
    assert not {"tiebreak", "max_kl"} & set(paper["select"]) and "retries" not in paper["repair"]
    assert Recipe(**paper) == get_recipe("paper")  # read back, the missing fields take their defaults
    default = get_recipe("default").to_dict()
    assert default["select"]["tiebreak"] is True and default["select"]["max_kl"] == 0.02
    assert default["repair"]["retries"] == 2 and Recipe(**default) == get_recipe("default")
    assert SelectStep(max_kl=0.0).model_dump()["max_kl"] == 0.0  # 0 is set, not the default None
    assert "retries" in RepairStep(retries=1).model_dump() and "capped" in SelectStep().model_dump()


def test_the_warp_kind_is_a_later_field_and_names_the_kinds_purify_reverses() -> None:
    from pruneguard.recipes.schema import SuspectStep
    from pruneguard.scan.reversal import REVERSAL_KINDS, TRIGGER_KINDS
    from pruneguard.workflows.purify import reversal_kinds

    default = get_recipe("default")
    assert "warp" not in default.to_dict()["suspect"] and reversal_kinds(default) == TRIGGER_KINDS
    warped = default.model_copy(update={"suspect": SuspectStep(**{**default.suspect.model_dump(), "warp": True})})
    assert warped.to_dict()["suspect"]["warp"] is True and reversal_kinds(warped) == REVERSAL_KINDS
    assert RepairStep(method="unlearn", trigger="all").trigger == "all"
