"""benchmarks/evidence_cut.py chooses the cut for what a flag leads to; benchmarks/recut.py judges a zoo run's
default rows again at a lower cut from their reports."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def recut(benchmark_module) -> ModuleType:
    return benchmark_module("recut.py", "recut_bench")


@pytest.fixture(scope="module")
def evidence_cut(benchmark_module) -> ModuleType:
    return benchmark_module("evidence_cut.py", "evidence_cut_bench")


def _row(mid: str, backdoored: bool, before: float, after: float, asr: tuple[float, float]) -> dict:
    model = {"id": mid, "backdoored": backdoored, "target_label": 3}
    return {"model": model, "defense": "default", "accuracy_before": before, "accuracy_after": after,
            "asr_before": asr[0], "asr_after": asr[1], "seconds": 500.0}  # fmt: skip


def _report(measure: float, evidence: bool, target: int = 3) -> dict:
    return {
        "suspect": {"target": target, "evidence": evidence},
        "scan": {"seconds": 10.0},
        "reversal_scan": {"seconds": 100.0},
        "vote": {"reference": {"measure": measure, "cut": 0.436, "seconds": 50.0}},
    }


def test_models_between_the_cuts_come_back_unchanged_and_the_others_as_they_ran(recut) -> None:
    rows = [
        _row("a", True, 0.90, 0.89, (0.99, 0.005)),  # measure 0.1: flagged at both cuts
        _row("b", False, 0.88, 0.86, (0.01, 0.01)),  # measure 0.41: a clean model flagged at 0.436 only
        _row("c", True, 0.87, 0.87, (0.95, 0.95)),  # measure 0.6: flagged at neither
        {**_row("a", True, 0.9, 0.9, (0.99, 0.99)), "defense": "none"},  # other defences are kept as they are
    ]
    reports = {"a": _report(0.1, True), "b": _report(0.41, True), "c": _report(0.6, False)}
    out, changed = recut.recut_rows(rows, reports, 0.382)
    assert out[0] == rows[0] and out[2] == rows[2] and out[3] == rows[3]
    assert out[1]["accuracy_after"] == 0.88 and out[1]["asr_after"] == 0.01 and out[1]["seconds"] == 160.0
    assert [c["id"] for c in changed] == ["b"] and changed[0]["accuracy_after_was"] == 0.86
    with pytest.raises(ValueError, match="above the run's own cut 0.436"):
        recut.recut_rows(rows, reports, 0.5)  # the models a higher cut adds were never repaired


def test_recut_refuses_a_missing_results_file_with_one_line(recut, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        recut.main(["--results", str(tmp_path / "none.json"), "--cut", "0.3"])
    assert exc.value.code == 2 and "--results=" in capsys.readouterr().err


def _model(mid: str, backdoored: bool, cls: int, target: int, measure: float, took: bool = True) -> dict:
    import math

    spec = {"id": mid, "backdoored": backdoored, "target_label": target}
    return {"spec": spec, "class": cls, "took": backdoored and took, "features": {"relative": -math.log(measure)}}


def test_a_flag_helps_only_at_the_target_of_a_backdoor_that_took(evidence_cut) -> None:
    assert evidence_cut.outcome(_model("a", True, 3, 3, 0.1)) == "helps"
    assert evidence_cut.outcome(_model("b", True, 5, 3, 0.1)) == "harms"  # another class
    assert evidence_cut.outcome(_model("c", False, 3, 3, 0.1)) == "harms"  # a clean model
    assert evidence_cut.outcome(_model("d", True, 3, 3, 0.1, took=False)) == "neutral"
    models = [_model("a", True, 3, 3, 0.1), _model("b", True, 5, 3, 0.4), _model("c", False, 6, 3, 0.45)]
    at = evidence_cut.counts(models, 0.42)
    assert (at["helps"], at["harms"], at["clean_flagged"]) == (1, 1, 0)


def test_the_cut_falls_between_the_flags_that_help_and_those_that_harm(evidence_cut, tmp_path, capsys) -> None:
    rows = []
    for i, (backdoored, target, low) in enumerate(
        [(True, 2, 0.1), (True, 2, 0.2), (True, 2, 0.3), (False, 2, 0.5), (False, 2, 0.6), (True, 7, 0.45)]
    ):
        model = {k: [1.0] * 10 for k in ("patch", "blend")}
        model["patch"][2] = low  # class 2 is the smallest: a wrong class for the last backdoored model
        spec = {"id": f"dev2-{i:02d}", "backdoored": backdoored, "target_label": target}
        rows.append({"spec": spec, "model_sizes": model, "reference_sizes": {k: [1.0] * 10 for k in model},
                     "sensitivity": {"score": 0.1, "target": 2, "threshold": 0.41}})  # fmt: skip
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"rows": rows}))
    out = tmp_path / "cut.json"
    assert evidence_cut.main(["--rows", str(path), "--compare", "0.55", "--out-json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert 0.3 < result["cut"] < 0.45  # the wrong-class flag at 0.45 counts against the cut
    assert result["at"]["0.55"]["harms"] == 2 and result["at"][str(result["cut"])]["harms"] == 0
    assert [m["id"] for m in result["between"]] == ["dev2-05", "dev2-03"]
    with pytest.raises(SystemExit) as exc:
        evidence_cut.main([])
    assert exc.value.code == 2 and "--rows/--reports" in capsys.readouterr().err


def test_the_detector_at_a_lower_cut_flags_only_what_both_cuts_flag(recut) -> None:
    specs = [
        {"id": "a", "backdoored": True, "target_label": 3},
        {"id": "b", "backdoored": False, "target_label": 3},
        {"id": "c", "backdoored": True, "target_label": 3},
        {"id": "d", "backdoored": False, "target_label": 3},
    ]
    reports = {"a": _report(0.1, True), "b": _report(0.41, True), "c": _report(0.6, False), "d": _report(0.7, False)}
    at = recut.detector_at(specs, reports, 0.382)
    assert at["tpr"] == 0.5 and at["fpr"] == 0.0 and at["target_accuracy_flagged"] == 1.0
    assert at["auroc"] == 0.75  # a (0.1) below both clean models' measures, c (0.6) below d's only
    assert recut.detector_at(specs, reports, 0.436)["fpr"] == 0.5


def test_the_band_counts_only_models_the_scan_corroborates(evidence_cut) -> None:
    def scanned(mid: str, backdoored: bool, cls: int, measure: float, score: float, agree: bool) -> dict:
        m = _model(mid, backdoored, cls, 3, measure)
        m["features"].update({"sensitivity": score, "agree": float(agree)})
        return m

    models = [
        scanned("a", True, 3, 0.1, 0.2, False),  # under the cut: flagged without the scan
        scanned("b", True, 3, 0.50, 0.6, True),  # above the cut, the scan agreeing: the band's helps
        scanned("c", True, 3, 0.52, 0.5, True),
        scanned("d", False, 3, 0.60, 0.7, True),  # a clean model the scan calls suspicious for the same class
        scanned("e", True, 3, 0.51, 0.6, False),  # the scan names another class: not in the band
        scanned("f", True, 3, 0.53, 0.3, True),  # the scan not suspicious (0.3 <= 0.41): not in the band
        scanned("g", False, 5, 0.45, 0.2, False),
    ]
    band = evidence_cut.choose_band(models, 0.4)
    assert band == pytest.approx(0.56)  # between the helps (0.50, 0.52) and the harm (0.60)
    with_band, without = evidence_cut.counts(models, 0.4, band), evidence_cut.counts(models, 0.4)
    assert (without["helps"], with_band["helps"], with_band["harms"]) == (1, 3, 0)
    assert evidence_cut.flagged(models[2], 0.4, band) and not evidence_cut.flagged(models[4], 0.4, band)
    assert evidence_cut.choose_band(models[:3], 0.4) is None  # no harm to place the edge against
