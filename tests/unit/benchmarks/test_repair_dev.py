"""benchmarks/repair_dev.py: variants are the default recipe after --set items, figures per variant, options."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pruneguard.recipes import get_recipe

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def rd(benchmark_module) -> ModuleType:
    return benchmark_module("repair_dev.py", "repair_dev_bench")


def test_variants_are_the_default_recipe_after_their_items(rd: ModuleType) -> None:
    default = get_recipe("default")
    assert rd.variant_recipe("default").model_dump(exclude={"name"}) == default.model_dump(exclude={"name"})
    v1 = rd.variant_recipe("v1")
    assert not v1.select.tiebreak and v1.repair.retries == 0  # the recipe the evaluation zoo ran (bc1298a)
    assert v1.select.max_kl is None and rd.variant_recipe("v2").select.max_kl is None
    assert v1.repair.lr == default.repair.lr and v1.anp == default.anp
    v3 = rd.variant_recipe("v3")  # the default of 12c928d: two rounds, the guard at the repair's end
    assert (v3.repair.rounds, v3.repair.guard, v3.select.max_kl) == (2, "end", 0.02)
    assert (default.repair.rounds, default.repair.guard) == (4, "backoff")
    v4 = rd.variant_recipe("v4")  # fa82b0a's default: an undone round ends the repair
    assert v4.repair.guard == "round" and v4.model_dump(exclude={"name", "repair"}) == default.model_dump(
        exclude={"name", "repair"}
    )
    assert rd.same_steps(rd.variant_recipe("backoff").to_dict(), default)
    for name in rd.VARIANTS:
        assert rd.variant_recipe(name).name == f"default+{name}"


def test_a_row_kept_before_the_round_guard_counts_for_the_end_guard(rd: ModuleType) -> None:
    kept = rd.variant_recipe("v3").to_dict()
    assert "guard" not in kept["repair"]  # a later field at its default is not written: old rows hash as before
    assert rd.same_steps(kept, rd.variant_recipe("v3")) and not rd.same_steps(kept, rd.variant_recipe("round"))


def test_a_kept_row_counts_when_its_recipe_computes_the_same(rd: ModuleType) -> None:
    v2 = rd.variant_recipe("v2")
    kept = v2.to_dict()
    kept["select"].pop("max_kl", None)  # a row kept before the field existed
    assert rd.same_steps({**kept, "name": "default+default", "description": "older words"}, v2)
    assert not rd.same_steps(kept, rd.variant_recipe("default"))  # the divergence cap changes the steps
    assert not rd.same_steps({**kept, "select": {**kept["select"], "cap_share": 1.0}}, v2)  # a field gone since
    assert not rd.same_steps(None, v2)


def _row(variant: str, trigger: str | None, before: float, after: float, asr: float) -> dict[str, Any]:
    return {
        "model": "dev-00",
        "arch": "small_cnn",
        "trigger": trigger,
        "variant": variant,
        "pruned": 2,
        "before": {"accuracy": before, "asr": 0.9 if trigger else None},
        "after": {"accuracy": after, "asr": asr if trigger else None},
    }


def test_summary_and_markdown(rd: ModuleType) -> None:
    rows = [
        _row("a", "badnets", 0.90, 0.89, 0.005),
        _row("a", "blend", 0.90, 0.87, 0.30),
        _row("a", None, 0.88, 0.875, 0.0),
        _row("b", "badnets", 0.90, 0.90, 0.9),
    ]
    s = rd.summary(rows)
    assert s["a"]["backdoored"] == 2 and s["a"]["asr_le_1pct"] == 1 and s["a"]["clean"] == 1
    assert s["a"]["mean_asr_after"] == pytest.approx(0.1525)
    assert s["a"]["mean_drop_backdoored"] == pytest.approx(0.02) and s["a"]["worst_drop_backdoored"] == pytest.approx(
        0.03
    )
    assert s["a"]["mean_drop_clean"] == pytest.approx(0.005)
    assert s["b"]["clean"] == 0 and s["b"]["mean_drop_clean"] is None
    md = rd.markdown(rows)
    assert "| a | 1 of 2 | 90.00 → 15.25 | 2.00 / 3.00 | 0.50 / 0.50 (1 models) |" in md
    assert "| b | 0 of 1 |" in md and "| – / – (0 models) |" in md


@pytest.mark.parametrize(
    "argv", [["--models", "eval-01"], ["--models", "eval8-01"], ["--models", "dev-01", "--variants", "nope"]]
)
def test_bad_options_exit_2(rd: ModuleType, argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        rd.main(argv)
    assert exc.value.code == 2
    assert "not accepted" in capsys.readouterr().err


def test_models_come_from_every_split_but_the_reporting_ones(rd: ModuleType) -> None:
    splits = rd.zoo.development_splits()
    assert "eval5" in splits and "dev" in splits
    assert not set(splits) & set(rd.zoo.EVAL_SPLITS)


def test_the_finding_is_kept_with_its_reference_weights(rd: ModuleType, tmp_path: Path, monkeypatch) -> None:
    import torch
    from torch import nn

    from pruneguard.scan.finder import SuspectFinding

    class Meta:
        def build(self, seed: int | None = None) -> nn.Module:
            torch.manual_seed(seed or 0)
            return nn.Linear(3, 2)

    trained = nn.Linear(3, 2)
    calls = []

    def step(*args: Any) -> SuspectFinding:
        calls.append(args)
        return SuspectFinding(4, True, ["why"], {"vote": {"suspected_target": 4}}, trained)

    monkeypatch.setattr(rd, "suspect_step", step)
    path = tmp_path / "finding.json"
    first = rd.cached_finding(path, None, None, get_recipe("default"), Meta(), 7)
    again = rd.cached_finding(path, None, None, get_recipe("default"), Meta(), 7)
    assert len(calls) == 1 and first is not again  # the second read the cache
    assert (again.target, again.evidence, again.reasons, again.record) == (
        4,
        True,
        ["why"],
        {"vote": {"suspected_target": 4}},
    )
    assert again.reference is not None and torch.equal(again.reference.weight, trained.weight)
    assert "reference" not in path.read_text()


def test_evidence_figures_apply_todays_rule_to_a_kept_finding(rd: ModuleType) -> None:
    from pruneguard.scan.finder import SuspectFinding

    stamps = {"patch": [100.0, 90.0, 95.0, 20.0], "blend": [50.0, 55.0, 45.0, 48.0]}
    warp = [300.0, 10.0, 320.0, 290.0]
    reference = {"patch": [100.0] * 4, "blend": [50.0] * 4, "warp": [300.0, 300.0, 300.0, 3000.0]}
    record = {
        "reversal": {"kinds": {k: {"mask_l1": v} for k, v in {**stamps, "warp": warp}.items()}},
        "vote": {
            "rule": "relative",
            # a record kept before the warp was judged on its own: its reference warp sizes are left out
            "reference": {"sizes": {k: {str(c): x for c, x in enumerate(v)} for k, v in reference.items()}},
        },
    }
    figures = rd.evidence_figures(SuspectFinding(3, True, [], record), rd.variant_recipe("warp"))
    assert figures["rule"]["class"] == 1 and figures["rule"]["kind"] == "warp"
    assert figures["rule"]["measure"] == pytest.approx(10.0 / 295.0) and figures["rule"]["evidence"]
    assert (figures["stamps"]["class"], figures["stamps"]["kind"]) == (3, "patch")
    assert figures["stamps"]["measure"] == pytest.approx(0.2 / 0.925) and figures["stamps"]["evidence"]
    assert rd.evidence_figures(SuspectFinding(None, False, [], {}), rd.variant_recipe("warp")) is None


def test_a_findings_only_row_gives_the_class_the_evidence_and_the_scan_time(rd: ModuleType) -> None:
    from pruneguard.scan.finder import SuspectFinding

    sizes = {"patch": [100.0, 90.0, 20.0], "blend": [50.0, 55.0, 48.0], "warp": [300.0, 310.0, 290.0]}
    record = {
        "sensitivity": {"seconds": 2.0},
        "reversal": {"kinds": {k: {"mask_l1": v} for k, v in sizes.items()}, "seconds": 30.0},
        "vote": {
            "rule": "relative",
            "kind": "patch",
            "reference": {
                "sizes": {k: {"0": 100.0, "1": 100.0, "2": 100.0} for k in ("patch", "blend")},
                "seconds": 8.0,
            },
        },
    }
    spec = {"id": "dev-05", "arch": "plain_cnn", "trigger": "wanet", "backdoored": True, "target_label": 5}
    row = rd.finding_row(spec, "warp_auto", SuspectFinding(2, True, [], record), rd.variant_recipe("warp_auto"))
    assert (row["suspect"], row["flagged"], row["true_target"], row["seconds"]) == (2, True, 5, 40.0)
    assert row["evidence"]["rule"]["kind"] == "patch" and row["evidence"]["rule"]["class"] == 2
    table = rd.findings_markdown([row])
    assert "| dev-05 | plain_cnn | wanet (5) | warp_auto | yes: 2 | 2, patch, " in table and table.endswith("| 40 |\n")
    assert rd.variant_recipe("warp_auto").repair.trigger == "auto" and rd.variant_recipe("warp_auto").suspect.warp


def test_each_judgement_of_the_round_guard_is_measured_and_the_guard_restored(rd: ModuleType) -> None:
    import functools

    import torch
    from torch import nn

    model = nn.Linear(2, 2, bias=False)
    start = {"weight": torch.zeros(2, 2)}
    judge = rd.purify_workflow.weaken_to_fit
    half = functools.partial  # purify builds its per-round guard the same way, inside the block

    with rd.per_round_figures(lambda m: {"accuracy": 1.0, "asr": float(m.weight.detach().abs().sum())}) as seen:
        guard = half(rd.purify_workflow.weaken_to_fit, measure=lambda m: {"accuracy": 0.0}, fits=lambda f: False)
        with torch.no_grad():
            model.weight.fill_(1.0)
        assert guard(model, start)["scale"] == 0.0
        with torch.no_grad():
            model.weight.fill_(2.0)
        kept = half(rd.purify_workflow.weaken_to_fit, measure=lambda m: {"accuracy": 1.0}, fits=lambda f: True)
        assert kept(model, start)["scale"] == 1.0
    assert rd.purify_workflow.weaken_to_fit is judge
    # the figures of the model each judgement left: undone (back at zero), then kept whole
    assert seen == [{"scale": 0.0, "accuracy": 1.0, "asr": 0.0}, {"scale": 1.0, "accuracy": 1.0, "asr": 8.0}]


def _staged(asrs: list[tuple[int, float, float]], before: float = 0.90) -> dict[str, Any]:
    row = _row("rounds8", "badnets", before, asrs[-1][2], asrs[-1][1])
    row["after_pruning"] = {"accuracy": before - 0.005, "asr": 0.95}
    row["per_round"] = [{"round": k, "lr": 0.01, "scale": 1.0, "accuracy": acc, "asr": asr} for k, asr, acc in asrs]
    return row


def test_a_repair_stopped_after_each_round_is_read_from_one_longer_run(rd: ModuleType) -> None:
    a = _staged([(1, 0.30, 0.89), (2, 0.015, 0.885), (2, 0.012, 0.888), (3, 0.004, 0.88)])
    b = _staged([(1, 0.50, 0.895)])  # its repair ended after one round
    assert rd.after_round(a, 2)["asr"] == 0.012  # the last judgement of round 2 (a try run again)
    assert rd.after_round(b, 3)["asr"] == 0.50
    assert rd.after_round({**a, "per_round": [{**a["per_round"][1], "round": 2}]}, 1)["asr"] == 0.95
    rounds = rd.summary([a, b])["rounds8"]["by_round"]
    assert sorted(rounds) == [1, 2, 3]
    assert (rounds[1]["asr_le_1pct"], rounds[2]["asr_le_2pct"], rounds[3]["asr_le_1pct"]) == (0, 1, 1)
    assert rounds[3]["mean_asr_after"] == pytest.approx((0.004 + 0.50) / 2)
    assert rounds[3]["mean_drop_backdoored"] == pytest.approx((0.02 + 0.005) / 2)
    assert rounds[3]["worst_drop_backdoored"] == pytest.approx(0.02)
    md = rd.markdown([a, b])
    assert "| 3 | 1 of 2 | 1 of 2 | 25.20 | 1.25 / 2.00 |" in md
    assert "| dev-00 | rounds8 | 1 (0.01, 1): 30.00 / 1.00; 2 (0.01, 1): 1.50 / 1.50;" in md
    assert "by_round" not in rd.summary([_row("a", "badnets", 0.9, 0.89, 0.005)])["a"]


def test_per_round_rows_join_the_last_attempts_judgements(rd: ModuleType) -> None:
    judged = [{"round": 1, "lr": 0.003, "scale": 0.5}, {"round": 2, "lr": 0.003, "scale": 1.0}]
    seen = [{"accuracy": 0.1, "asr": 0.9}, {"accuracy": 0.8, "asr": 0.2}, {"accuracy": 0.85, "asr": 0.01}]
    rows = rd.per_round_rows(judged, seen)  # the first measurement belongs to an earlier attempt
    assert [(r["round"], r["scale"], r["asr"]) for r in rows] == [(1, 0.5, 0.2), (2, 1.0, 0.01)]
    with pytest.raises(ValueError, match="2 measurements for 3 judged rounds"):
        rd.per_round_rows([*judged, judged[0]], seen[:2])


def test_kept_refuses_a_model_without_its_row_before_running_anything(rd: ModuleType, tmp_path: Path, capsys) -> None:
    argv = ["--models", "eval7-23", "--variants", "rounds8", "--kept", "--cache", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        rd.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--kept: no row of eval7-23 for the variant rounds8" in err
    assert not (tmp_path / "models").exists()  # nothing was trained
