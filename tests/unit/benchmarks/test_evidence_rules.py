"""benchmarks/evidence_rules.py: AUROC, the chosen cut and each rule's score on hand-made evidence rows."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def rules(benchmark_module) -> ModuleType:
    return benchmark_module("evidence_rules.py", "evidence_rules_bench")


def _row(
    ident: str, backdoored: bool, target: int, model: list[float], ref: list[float], score: float
) -> dict[str, Any]:
    return {
        "spec": {"id": ident, "backdoored": backdoored, "target_label": target},
        "sensitivity": {"score": score, "target": target, "threshold": 0.41},
        "model_sizes": {"patch": model, "blend": [2 * v for v in model]},
        "reference_sizes": {"patch": ref, "blend": [2 * v for v in ref]},
    }


def test_auroc_counts_ties_as_half(rules: ModuleType) -> None:
    assert rules.auroc([3.0, 2.0], [1.0, 0.0]) == 1.0
    assert rules.auroc([0.0], [1.0]) == 0.0
    assert rules.auroc([1.0], [1.0]) == 0.5


def test_cut_separates_when_it_can_and_sits_in_the_widest_gap(rules: ModuleType) -> None:
    cut = rules.choose_cut([5.0, 6.0], [1.0, 2.0])
    assert 2.0 < cut < 5.0
    assert cut == pytest.approx(3.5)


def test_cut_under_a_false_positive_budget_keeps_to_it(rules: ModuleType) -> None:
    pos, neg = [3.0, 5.0, 6.0], [1.0, 2.0, 4.0, 0.0]
    assert rules.choose_cut(pos, neg) == pytest.approx(2.5)  # balanced accuracy: all three, one clean model flagged
    assert rules.choose_cut(pos, neg, max_fpr=0.25) == pytest.approx(2.5)  # within a budget of one in four
    cut = rules.choose_cut(pos, neg, max_fpr=0.0)  # no clean model may be flagged: above 4.0, 2 of 3 found
    assert 4.0 < cut < 5.0 and cut == pytest.approx(4.5)
    assert rules.choose_cut([1.0], [2.0], max_fpr=0.0) == 2.0  # nothing separates: flag none


def test_relative_ratio_forgives_a_model_brittle_on_every_class(rules: ModuleType) -> None:
    brittle = _row("c", False, 0, [60.0] * 4, [100.0] * 4, 0.1)  # 0.6x the reference everywhere: no outlier
    backdoor = _row("b", True, 2, [90.0, 90.0, 10.0, 90.0], [100.0] * 4, 0.1)
    assert rules.reference_ratio(brittle)[0] == pytest.approx(-0.6)
    assert rules.relative_ratio(brittle)[0] == pytest.approx(-1.0)
    score, cls = rules.relative_ratio(backdoor)
    assert cls == 2 and score == pytest.approx(-10 / 90)


def test_runner_up_ratio_wants_the_smallest_class_alone(rules: ModuleType) -> None:
    group = _row("c", False, 0, [40.0, 42.0, 90.0, 95.0], [100.0] * 4, 0.1)  # two easy classes together
    alone = _row("b", True, 3, [90.0, 85.0, 95.0, 10.0], [100.0] * 4, 0.1)
    assert rules.runner_up_ratio(group) == (pytest.approx(-40 / 42), 0)
    assert rules.runner_up_ratio(alone) == (pytest.approx(-10 / 85), 3)


def test_neural_cleanse_names_the_smallest_class(rules: ModuleType) -> None:
    score, cls = rules.neural_cleanse(_row("b", True, 1, [50.0, 5.0, 52.0, 48.0, 51.0], [1.0] * 5, 0.1))
    assert cls == 1 and score > 2


def test_judge_reports_rates_at_fixed_cuts(rules: ModuleType, tmp_path: Path) -> None:
    rows = [
        _row("b1", True, 2, [90.0, 90.0, 10.0, 90.0], [100.0] * 4, 0.6),
        _row("b2", True, 1, [90.0, 20.0, 90.0, 90.0], [100.0] * 4, 0.2),
        _row("c1", False, 0, [60.0] * 4, [100.0] * 4, 0.1),
    ]
    cuts = {name: 0.0 for name in rules.RULES}
    cuts.update({"sensitivity": 0.41, "neural_cleanse": 2.0, "reference_ratio": -0.75, "relative_ratio": -0.5})
    out = rules.judge(rules.score_rows(rows), cuts)
    rel = out["relative_ratio"]
    assert rel["tpr"] == 1.0 and rel["fpr"] == 0.0 and rel["target_accuracy"] == 1.0
    assert out["reference_ratio"]["fpr"] == 1.0  # the brittle clean model falls under 0.75 of the reference
    assert out["sensitivity"]["tpr"] == 0.5
    either = out["sensitivity_or_reference_ratio"]
    assert either["flagged_clean"] == ["c1"] and either["missed"] == []
    files = tmp_path / "rows.json"
    files.write_text(json.dumps({"rows": rows}))
    written = tmp_path / "cuts.json"
    assert rules.main([str(files), "--write-cuts", str(written)]) == 0
    assert set(json.loads(written.read_text())) == set(rules.RULES)


def test_scored_rows_of_an_earlier_output_join_and_give_the_same_figures(
    rules: ModuleType, tmp_path: Path, capsys
) -> None:
    rows = [
        _row("b1", True, 2, [90.0, 90.0, 10.0, 90.0], [100.0] * 4, 0.6),
        _row("b2", True, 1, [90.0, 20.0, 90.0, 90.0], [100.0] * 4, 0.2),
        _row("c1", False, 0, [60.0] * 4, [100.0] * 4, 0.1),
        _row("c2", False, 3, [70.0, 65.0, 80.0, 60.0], [100.0] * 4, 0.5),
    ]
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps({"rows": rows[::2]}))
    second.write_text(json.dumps({"rows": rows[1::2]}))
    assert rules.main([str(first), "--rows"]) == 0
    earlier = tmp_path / "earlier.json"
    earlier.write_text(capsys.readouterr().out)
    assert rules.main([str(second), "--scored", str(earlier)]) == 0
    joined = json.loads(capsys.readouterr().out)
    assert rules.main([str(first), str(second)]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert joined["models"] == whole["models"] == 4
    for name in ("relative_ratio", "sensitivity", "sensitivity_or_reference_ratio"):
        for key in ("auroc", "cut", "tpr", "fpr", "flagged_clean", "missed"):
            assert joined["rules"][name].get(key) == pytest.approx(whole["rules"][name].get(key)), (name, key)
    with pytest.raises(SystemExit):  # the same model twice
        rules.main([str(first), "--scored", str(earlier)])


def _zoo_output(asr: dict[str, float | None]) -> dict[str, Any]:
    return {"rows": [{"model": {"id": i}, "defense": "none", "asr_before": a} for i, a in asr.items()]}


def test_backdoors_that_did_not_take_are_judged_apart(rules: ModuleType, tmp_path: Path, capsys) -> None:
    rows = [
        _row("b1", True, 2, [90.0, 90.0, 10.0, 90.0], [100.0] * 4, 0.6),  # a strong backdoor
        _row("b2", True, 1, [90.0, 90.0, 90.0, 90.0], [100.0] * 4, 0.1),  # poisoned, but its attack did not take
        _row("c1", False, 0, [60.0, 90.0, 90.0, 90.0], [100.0] * 4, 0.1),
    ]
    files, attacks = tmp_path / "rows.json", tmp_path / "zoo.json"
    files.write_text(json.dumps({"rows": rows}))
    attacks.write_text(json.dumps(_zoo_output({"b1": 0.99, "b2": 0.04, "c1": None})))
    assert rules.main([str(files), "--attacks", str(attacks)]) == 0
    rel = json.loads(capsys.readouterr().out)["rules"]["relative_ratio"]
    assert rel["auroc"] == 0.5  # the clean model's outlier ranks above the poisoned model without a backdoor
    assert rel["backdoored_took"] == 1 and rel["auroc_took"] == 1.0
    assert rules.main([str(files), "--attacks", str(attacks), "--took", "0.01"]) == 0  # both took at 1%
    assert json.loads(capsys.readouterr().out)["rules"]["relative_ratio"]["backdoored_took"] == 2
    assert rules.main([str(files)]) == 0  # without --attacks: no such figures
    assert "auroc_took" not in json.loads(capsys.readouterr().out)["rules"]["relative_ratio"]


def test_attacks_must_cover_every_backdoored_model_and_took_is_a_share(
    rules: ModuleType, tmp_path: Path, capsys
) -> None:
    files, attacks = tmp_path / "rows.json", tmp_path / "zoo.json"
    files.write_text(json.dumps({"rows": [_row("b1", True, 1, [90.0, 10.0, 90.0, 90.0], [100.0] * 4, 0.6)]}))
    attacks.write_text(json.dumps(_zoo_output({"other": 0.9})))
    for argv in (["--attacks", str(attacks)], ["--took", "1.5"], ["--took", "0"]):
        with pytest.raises(SystemExit) as exc:
            rules.main([str(files), *argv])
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no ASR for the backdoored models ['b1']" in err and "--took=1.5 is not accepted" in err


def _report(row: dict[str, Any], evidence: bool, partial: bool = False) -> dict[str, Any]:
    refs = {k: {str(c): v for c, v in enumerate(sizes)} for k, sizes in row["reference_sizes"].items()}
    if partial:  # the ratio rule's record: the reference reversed to the candidates only
        refs = {k: {c: v for c, v in d.items() if c == "2"} for k, d in refs.items()}
    return {
        "scan": {"score": row["sensitivity"]["score"], "suspected_target": 2, "threshold": 0.41},
        "reversal_scan": {"kinds": {k: {"mask_l1": v} for k, v in row["model_sizes"].items()}},
        "vote": {"reference": {"sizes": refs}},
        "suspect": {"evidence": evidence, "target": 2},
    }


def test_purify_reports_are_scored_as_evidence_rows(rules: ModuleType, tmp_path: Path, capsys) -> None:
    row = _row("b1", True, 2, [90.0, 90.0, 10.0, 90.0], [100.0] * 4, 0.6)
    folder = tmp_path / "reports"
    (folder / "m1").mkdir(parents=True)
    (folder / "flat.json").write_text(json.dumps(_report(row, True)))
    (folder / "m1" / "report.json").write_text(json.dumps(_report(row, False)))
    (folder / "ratio_rule.json").write_text(json.dumps(_report(row, True, partial=True)))  # skipped
    (folder / "unscanned.json").write_text(json.dumps({"suspect": {"evidence": False, "target": None}}))
    assert rules.main(["--score-reports", str(folder)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"reports/flat", "reports/m1"}
    assert out["reports/flat"]["evidence"] is True and out["reports/m1"]["evidence"] is False
    want = {n: [round(v, 4) for v in f(row)] for n, f in rules.RULES.items()}
    assert out["reports/flat"]["scores"] == want
    assert want["ratio_sensitivity"] == [pytest.approx(-0.1 + 0.6), 2]
    rows = tmp_path / "rows.json"  # the same model's row from another run: scored beside the report
    other = _row("b1", True, 2, [90.0, 90.0, 20.0, 90.0], [100.0] * 4, 0.5)
    rows.write_text(json.dumps({"rows": [{**other, "model": "flat"}, {**row, "model": "m9"}]}))
    assert rules.main([str(rows), "--score-reports", str(folder)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reports/flat"]["row_scores"] == {n: [round(v, 4) for v in f(other)] for n, f in rules.RULES.items()}
    assert "row_scores" not in out["reports/m1"]  # no row of that model
    with pytest.raises(SystemExit) as exc:  # neither rows nor reports
        rules.main([])
    assert exc.value.code == 2


def test_a_report_with_a_warp_gives_the_finder_s_relative_measure(rules: ModuleType, benchmark_module) -> None:
    """The warp has no reference sizes (judged against the model's own classes): its row keeps the stamps for the
    rules that read them and the warp apart, and the relative measure is the one the finder decided with."""
    from pruneguard.scan.finder import relative_evidence

    learned = benchmark_module("evidence_learned.py", "evidence_learned_bench")
    row = _row("w1", True, 2, [90.0, 80.0, 60.0, 90.0], [100.0] * 4, 0.3)
    report = _report(row, True)
    warp = [40.0, 38.0, 42.0, 6.0]  # class 3 reached by a far smaller warp than the others
    report["reversal_scan"]["kinds"]["warp"] = {"mask_l1": warp}
    got = rules.report_row(report)
    assert got is not None and set(got["model_sizes"]) == {"patch", "blend"}
    assert got["self_judged_sizes"] == {"warp": warp}
    features, cls = learned.features(got)
    measure, want_cls, kind, _ = relative_evidence({**row["model_sizes"], "warp": warp}, row["reference_sizes"])
    assert kind == "warp" and cls == want_cls == 3
    assert features["relative"] == pytest.approx(-math.log(measure))
    assert rules.RULES["neural_cleanse"](got) == rules.RULES["neural_cleanse"](row)  # the stamps' rules unchanged
