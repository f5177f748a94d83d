"""benchmarks/detector_figures.py reads a split's detectors from committed reports; benchmarks/evidence_learned.py
fits its detector on some splits and judges it on the held-out one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def figures(benchmark_module) -> ModuleType:
    return benchmark_module("detector_figures.py", "detector_figures_bench")


@pytest.fixture(scope="module")
def learned(benchmark_module) -> ModuleType:
    return benchmark_module("evidence_learned.py", "evidence_learned_bench")


def _report(score: float, measure: float, target: int, flagged: bool) -> dict:
    return {
        "scan": {"score": score, "suspected_target": target, "threshold": 0.41},
        "reversal_scan": {"anomaly_index": 1.0, "suspected_target": target},
        "vote": {"reference": {"measure": measure, "cut": 0.436}},
        "suspect": {"target": target, "evidence": flagged},
        "config": {"recipe": {"suspect": {"sensitivity_evidence": False}}},
    }


def test_figures_come_from_the_reports_by_the_statistic_that_decides(figures, tmp_path: Path, capsys) -> None:
    zoo = figures.zoo
    args = zoo.parse_args(["--split", "eval5", "--cache", str(tmp_path / "cache")])
    specs = zoo.zoo_specs("eval5")
    bad = [s for s in specs if s["backdoored"]][:2]
    good = [s for s in specs if not s["backdoored"]][:2]
    reports = tmp_path / "reports"
    reports.mkdir()
    # backdoored: small measures (flagged); clean: larger ones, one with a high scan score that does not decide
    for spec, (score, measure) in zip([*bad, *good], [(0.1, 0.2), (0.1, 0.3), (0.9, 0.6), (0.1, 0.5)], strict=True):
        name = f"{zoo.train_unit(spec, args).name}-default-0.01.json"
        flagged = measure <= 0.436
        (reports / name).write_text(json.dumps(_report(score, measure, spec["target_label"], flagged)))
    out = tmp_path / "d.json"
    assert figures.main(["--split", "eval5", "--join-reports", str(reports), "--cache", str(tmp_path / "cache"),
                         "--out-json", str(out)]) == 0  # fmt: skip
    found = json.loads(out.read_text())["scan"]["default"]
    assert found["backdoored"] == 2 and found["clean"] == 2
    assert found["auroc"] == 1.0 and found["tpr"] == 1.0 and found["fpr"] == 0.0  # the scan's 0.9 does not count
    assert json.loads(out.read_text())["scan"]["sensitivity"]["auroc"] == 0.25
    with pytest.raises(SystemExit) as exc:
        figures.main(["--split", "eval5", "--join-reports", str(tmp_path), "--cache", str(tmp_path / "cache")])
    assert exc.value.code == 2 and "holds no default-recipe report" in capsys.readouterr().err


def _row(target: int, low: float, score: float, sens_target: int) -> dict:
    model = {k: [1.0] * 10 for k in ("patch", "blend")}
    model["patch"][target] = low
    return {
        "model_sizes": model,
        "reference_sizes": {k: [1.0] * 10 for k in ("patch", "blend")},
        "sensitivity": {"score": score, "target": sens_target, "threshold": 0.41},
    }


def test_features_point_at_the_smallest_relative_ratio(learned) -> None:
    f, cls = learned.features(_row(3, 0.25, 0.5, 3))
    assert cls == 3 and f["relative"] == pytest.approx(-math.log(0.25))
    assert f["agree"] == 1.0 and f["sensitivity"] == 0.5 and f["kinds_agree"] == 0.0  # blend's smallest: class 0
    f, _ = learned.features(_row(3, 0.25, 0.5, 7))
    assert f["agree"] == 0.0


def test_every_split_is_held_out_and_judged_on_models_not_fitted(learned, tmp_path: Path, capsys) -> None:
    rows = []
    for split in ("dev2", "eval3", "eval4"):
        for i in range(8):
            backdoored = i % 2 == 0
            low = 0.2 + 0.02 * i if backdoored else 0.9 - 0.01 * i
            spec = {"id": f"{split}-{i:02d}", "backdoored": backdoored, "target_label": 2}
            rows.append({"spec": spec, **_row(2, low, 0.3, 2)})
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"rows": rows}))
    out = tmp_path / "learned.json"
    assert learned.main(["--rows", str(path), "--features", "relative,sensitivity", "--out-json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert sorted(result["held_out"]) == ["dev2", "eval3", "eval4"]
    for split in result["held_out"].values():
        assert split["learned"]["models"] == 8 and split["learned"]["auroc"] == 1.0
        assert split["relative"]["fpr"] == "0/4" and split["learned"]["target"] == 1.0
    assert "pooled out-of-split AUROC" in capsys.readouterr().out


def test_the_class_prior_takes_a_class_that_is_easy_on_every_clean_model_out(learned) -> None:
    clean = [{"spec": {"backdoored": False}, "log_relative": learned.log_relative(_row(6, 0.8, 0.1, 0))}] * 3
    prior = learned.class_prior(clean)
    assert prior["patch"][6] < 0 and prior["blend"][6] == 0
    easy_shirt = {"log_relative": learned.log_relative(_row(6, 0.8, 0.1, 0))}
    assert learned.calibrated(easy_shirt, prior)[0] == pytest.approx(0.0)  # as easy as on every clean model
    backdoor = {"log_relative": learned.log_relative(_row(3, 0.2, 0.1, 3))}
    score, cls = learned.calibrated(backdoor, prior)
    assert cls == 3 and score == pytest.approx(-math.log(0.2))
