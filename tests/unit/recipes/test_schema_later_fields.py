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
