"""benchmarks/evidence_rules.py: AUROC, the chosen cut and each rule's score on hand-made evidence rows."""

from __future__ import annotations

import json
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
