"""``pruneguard harden --csv`` on a small fraud-like table: the rare class's metrics per stage, the constrained
positive-only evasion and its threat model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pruneguard.cli.app import main
from pruneguard.data.fraud import write_fraud_csv

FAST = ["--n-eval", "24", "--pgd-steps", "3", "--square-queries", "8", "--eps-sweep", "0.05", "--clean-samples", "48"]
KEYS = ("precision", "recall", "f1", "pr_auc", "roc_auc", "recall_at_fpr", "robust_recall_at_fpr")


@pytest.fixture(scope="module")
def fraud_csv(tmp_path_factory) -> Path:
    return write_fraud_csv(tmp_path_factory.mktemp("fraud") / "fraud.csv", rows=2000, fraud_rate=0.05, seed=0)


def test_harden_csv_reports_the_positive_class_for_every_stage(fraud_csv: Path, tmp_path: Path, capsys) -> None:
    cons = tmp_path / "constraints.yaml"
    cons.write_text("immutable: [Time, V1]\nbounds: {Amount: [0, null]}\n")
    out = tmp_path / "h"
    args = ["harden", "--csv", str(fraud_csv), "--label", "Class", "--out", str(out), "--train-epochs", "3"]
    args += ["--target-sparsity", "0.2", "--step", "0.2", "--quantize", "int8", "--constraints", str(cons)]
    assert main([*args, "--eps", "0.5", "--max-acc-drop", "0.5", "--no-robust-stop", *FAST]) == 0
    printed = capsys.readouterr().out
    r = json.loads((out / "report.json").read_text())
    pc = r["positive_class"]
    assert pc["positive_label"] == "1" and pc["positive_index"] == 1 and pc["fpr"] == 0.01
    assert pc["minority_share"] == pytest.approx(0.05, abs=0.005)
    assert pc["n_positive_test"] == 20 and pc["n_test"] == 400  # the whole test split, not the n_eval sample
    assert set(pc["stages"]) == {"dense", "pruned", "int8"}
    for stage in r["stages"]:
        assert set(stage["positive"]) == set(KEYS)
        assert 0.0 <= stage["positive"]["pr_auc"] <= 1.0
        assert stage["positive"]["robust_recall_at_fpr"] <= stage["positive"]["recall_at_fpr"] + 1e-9
    tm = r["threat_model"]["positive_evasion"]
    assert "class '1' only" in tm["attacker"] and tm["constraints"]["immutable"] == ["Time", "V1"]
    assert tm["constraints"]["bounds"] == {"Amount": [0.0, None]}
    assert "positive class '1'" in printed and "rec@FPR" in printed
    html = (out / "report.html").read_text()
    assert "Positive class 1" in html and "robust recall @ FPR" in html


@pytest.mark.parametrize(("rate", "positive", "expected"), [(0.3, None, None), (0.3, "1", 120), (0.05, "0", 380)])
def test_positive_class_only_when_rare_or_named(
    tmp_path: Path, rate: float, positive: str | None, expected: int | None
) -> None:
    path = write_fraud_csv(tmp_path / "t.csv", rows=2000, fraud_rate=rate, seed=1)
    out = tmp_path / "h"
    args = ["harden", "--csv", str(path), "--label", "Class", "--out", str(out), "--train-epochs", "1"]
    args += ["--target-sparsity", "0.2", "--step", "0.2", "--max-acc-drop", "0.5", "--no-robust-stop", *FAST]
    assert main([*args, *(["--positive-label", positive] if positive else [])]) == 0
    pc = json.loads((out / "report.json").read_text())["positive_class"]
    assert (pc and pc["n_positive_test"]) == expected


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--positive-label", "7"], "--positive-label='7'"),
        (["--fpr", "1.5"], "--fpr"),
        (["--constraints", "missing.yaml"], "--constraints="),
    ],
)
def test_bad_positive_options_exit_2(fraud_csv: Path, tmp_path: Path, capsys, extra: list[str], needle: str) -> None:
    out = tmp_path / "bad"
    args = ["harden", "--csv", str(fraud_csv), "--label", "Class", "--out", str(out), "--train-epochs", "1"]
    code = main([*args, "--target-sparsity", "0.2", "--step", "0.2", *FAST, *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("extra", [["--eps", "1e12"], ["--positive-label", "7"]])
def test_bad_input_found_after_training_leaves_a_resumed_run_folder_as_it_was(
    fraud_csv: Path, tmp_path: Path, capsys, extra: list[str]
) -> None:
    """The MLP that --csv trains is written only once every option has been checked: a bad --eps (judged against
    the data's box) or --positive-label exits 2 without adding dense.safetensors to the folder it resumes."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".pruneguard-run").write_text("")
    before = sorted(p.name for p in out.iterdir())
    args = ["harden", "--csv", str(fraud_csv), "--label", "Class", "--out", str(out), "--train-epochs", "1"]
    code = main([*args, "--target-sparsity", "0.2", "--step", "0.2", *FAST, *extra, "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == before
