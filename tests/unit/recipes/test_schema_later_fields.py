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
    assert default.to_dict()["suspect"]["warp"] is True and reversal_kinds(default) == REVERSAL_KINDS
    stamps = default.model_copy(update={"suspect": SuspectStep(**{**default.suspect.model_dump(), "warp": False})})
    assert "warp" not in stamps.to_dict()["suspect"] and reversal_kinds(stamps) == TRIGGER_KINDS
    assert RepairStep(method="unlearn", trigger="all").trigger == "all"


def test_auto_unlearns_the_warp_only_where_a_warp_decided_the_evidence() -> None:
    from pruneguard.scan.finder import SuspectFinding
    from pruneguard.scan.reversal import REVERSAL_KINDS, TRIGGER_KINDS
    from pruneguard.workflows.purify import repair_kinds

    default = get_recipe("default")
    assert default.repair.trigger == "auto"
    auto = default
    every = default.model_copy(update={"repair": RepairStep(**{**default.repair.model_dump(), "trigger": "all"})})
    both = default.model_copy(update={"repair": RepairStep(**{**default.repair.model_dump(), "trigger": "both"})})

    def found(kind: str, evidence: bool = True) -> SuspectFinding:
        return SuspectFinding(3, evidence, [], {"vote": {"kind": kind, "suspected_target": 3}})

    assert repair_kinds(auto, found("warp")) == (*TRIGGER_KINDS, "warp")
    assert repair_kinds(auto, found("blend")) == TRIGGER_KINDS
    assert repair_kinds(auto, found("warp", evidence=False)) == TRIGGER_KINDS  # the warp decided nothing
    assert repair_kinds(auto, SuspectFinding(3, True, ["named"], {"given": 3})) == TRIGGER_KINDS
    assert repair_kinds(every, found("blend")) == REVERSAL_KINDS and repair_kinds(both, found("warp")) == TRIGGER_KINDS


def test_the_recheck_tests_the_warp_where_a_warp_decided_the_evidence(monkeypatch) -> None:
    import torch

    from pruneguard.scan.finder import SuspectFinding
    from pruneguard.workflows import purify as wp

    seen: list[float | None] = []
    monkeypatch.setattr(wp, "recheck_suspect", lambda *a, **k: seen.append(k["warp_cut"]) or {})
    recipe = get_recipe("default")
    model = torch.nn.Linear(2, 2)
    report = {"pruned_neurons": 1}
    for kind in ("warp", "patch"):
        finding = SuspectFinding(3, True, [], {"sensitivity": {}, "vote": {"kind": kind}}, reference=model)
        wp.recheck_step(recipe, finding, report, model, model, None, None, None, 0)  # type: ignore[arg-type]
    assert seen == [recipe.suspect.relative_cut, None]


def test_the_corroborated_band_is_a_later_field_above_the_relative_cut() -> None:
    from pruneguard.recipes.schema import SuspectStep

    default = get_recipe("default")
    assert default.suspect.corroborated_cut is not None
    assert default.suspect.corroborated_cut > default.suspect.relative_cut
    assert default.to_dict()["suspect"]["corroborated_cut"] == default.suspect.corroborated_cut
    assert "corroborated_cut" not in SuspectStep(evidence="relative").model_dump()  # unset: hashes as before
    # inert where it cannot apply, as relative_cut is: switching the rule or the method needs no second --set
    assert SuspectStep(**{**default.suspect.model_dump(), "evidence": "ratio"}).corroborated_cut is not None


def test_the_unpruned_fallback_is_a_later_field_the_default_sets() -> None:
    assert get_recipe("default").repair.unpruned_fallback is True
    assert get_recipe("default").to_dict()["repair"]["unpruned_fallback"] is True
    assert "unpruned_fallback" not in RepairStep(method="unlearn").model_dump()  # unset: hashes as before
    assert "unpruned_fallback" not in get_recipe("paper").to_dict()["repair"]
