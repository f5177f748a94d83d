"""``pruneguard harden`` end to end on tiny built-in data: breast-cancer MLP, a CSV file, a digits CNN."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pruneguard.cli.app import main
from pruneguard.models import read_meta
from pruneguard.utils.io import sha256_file
from pruneguard.workflows.attack import load_hardened

FAST = ["--n-eval", "24", "--pgd-steps", "3", "--square-queries", "8", "--eps-sweep", "0.05", "--clean-samples", "48"]


def _train(tmp: Path, *args: str) -> Path:
    code = main(["train", "--epochs", "2", "--out", str(tmp), "--overwrite", *args])
    assert code == 0
    return tmp / "model.safetensors"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("digits"), "--dataset", "digits", "--width", "0.25")


@pytest.fixture(scope="module")
def cancer(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("cancer"), "--dataset", "breast_cancer", "--arch", "mlp", "--epochs", "5")


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_tabular_harden_with_feature_pruning_and_int8(cancer: Path, tmp_path: Path) -> None:
    out = tmp_path / "h"
    args = ["harden", "--model", str(cancer), "--out", str(out), "--target-sparsity", "0.3", "--step", "0.15"]
    args += ["--quantize", "int8", "--feature-keep", "0.5", "--eps", "0.3", "--max-acc-drop", "0.5"]
    code = main([*args, "--no-robust-stop", *FAST])
    assert code == 0
    r = _report(out)
    assert [s["stage"] for s in r["stages"]] == ["dense", "pruned", "int8"]
    assert set(r["evaluations"]["int8"]["attacks"]) >= {"bpda_pgd", "bpda_fgsm", "transfer_pgd_from_float", "square"}
    assert r["stages"][2]["pgd"] == r["evaluations"]["int8"]["attacks"]["bpda_pgd"]["robust_accuracy"]
    assert "transfer_pgd_from_dense" in r["evaluations"]["pruned"]["attacks"]
    assert r["threat_model"]["eps_units"] == "standard deviations of each feature"
    assert len(r["threat_model"]["eps_raw_per_feature"]) == 30
    assert sum(f["kept"] for f in r["pruning"]["features"]) == 15
    assert [it["sparsity"] for it in r["iterations"]] == [0.0, 0.15, 0.3] and not r["collapse"]["stopped"]
    for key in ("model_sha256", "config", "seed", "versions", "git_commit", "started", "finished", "verdict"):
        assert key in r
    assert r["model_sha256"] == sha256_file(cancer)
    html = (out / "report.html").read_text()
    assert html.count("<table>") >= 6 and html.count("data:image/png;base64") == 3 and "int8" in html
    meta = read_meta(out / "hardened.safetensors")
    assert meta.extra["hardened_from"]["model_sha256"] == sha256_file(cancer)
    assert meta.extra["hardened_from"]["report_sha256"] == sha256_file(out / "report.json")
    model, _ = load_hardened(out / "hardened.safetensors")
    first = model.net[1].weight
    dropped = [i for i, f in enumerate(r["pruning"]["features"]) if not f["kept"]]
    assert bool((first[:, dropped] == 0).all())


def test_csv_without_model_trains_an_mlp_first(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    path = tmp_path / "cancer.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*bunch.feature_names, "diagnosis"])
        for row, t in zip(bunch.data, bunch.target, strict=True):
            w.writerow([*(f"{v:g}" for v in row), ("malignant", "benign")[t]])
    out = tmp_path / "h"
    args = ["harden", "--csv", str(path), "--label", "diagnosis", "--out", str(out), "--train-epochs", "3"]
    code = main([*args, "--target-sparsity", "0.2", "--step", "0.2", "--json", *FAST])
    assert code == 0
    r = _report(out)
    assert r["model_sha256"] == sha256_file(out / "dense.safetensors") and r["kind"] == "tabular"
    assert read_meta(out / "dense.safetensors").extra["features"][0] == "mean radius"


def test_structured_digits_harden_gives_a_smaller_loadable_model(digits: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    args = ["harden", "--model", str(digits), "--out", str(out), "--structured", "--target-sparsity", "0.5"]
    code = main([*args, "--step", "0.25", "--max-acc-drop", "0.99", "--no-robust-stop", *FAST])
    assert code == 0
    r = _report(out)
    assert r["stages"][1]["params"] < r["stages"][0]["params"] and r["stages"][1]["sparsity"] > 0.4
    meta = read_meta(out / "hardened.safetensors")
    assert len(meta.extra["structured"]["plans"]) == 2 and meta.extra["structured"]["remaining"]
    model, _ = load_hardened(out / "hardened.safetensors")
    assert sum(p.numel() for p in model.parameters()) == r["stages"][1]["params"]
    code = main(
        ["attack", "--model", str(out / "hardened.safetensors"), "--out", str(tmp_path / "a"), "--n-samples", "24"]
    )
    assert code == 0


def test_collapse_stops_and_keeps_the_dense_model(digits: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    args = ["harden", "--model", str(digits), "--out", str(out), "--target-sparsity", "0.9", "--step", "0.9"]
    code = main([*args, "--finetune-epochs", "0", "--max-acc-drop", "0.001", "--no-robust-stop", *FAST])
    assert code == 0
    r = _report(out)
    assert r["collapse"]["stopped"] and r["collapse"]["kept_step"] == 0 and "max_acc_drop" in r["collapse"]["reason"]
    assert r["iterations"][1]["collapsed"] and r["stages"][1]["sparsity"] == 0.0
    assert "kept the dense model" in r["collapse"]["message"]


def test_resume_and_policy_exit_code(digits: Path, tmp_path: Path) -> None:
    out = tmp_path / "p"
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_robust_accuracy: {pgd: 1.0}\nrequired_attacks: [fgsm, pgd, square]\n")
    args = ["harden", "--model", str(digits), "--out", str(out), "--target-sparsity", "0.2", "--step", "0.1"]
    args += ["--max-acc-drop", "0.5", "--no-robust-stop", *FAST]
    assert main([*args, "--policy", str(policy)]) == 3
    r = _report(out)
    rules = {x["rule"]: x["passed"] for x in r["policy"]["rules"]}
    assert rules == {"min_robust_accuracy[pgd]": False, "required_attacks": True}
    assert (out / "hardened.safetensors").is_file()
    assert main([*args, "--resume"]) == 0
    again = _report(out)
    assert [i["metrics"] for i in again["iterations"]] == [i["metrics"] for i in r["iterations"]]
    assert again["hardened_weights_sha256"] == r["hardened_weights_sha256"]


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--step", "0.6"], "--step"),
        (["--adv-train", "pgd", "--norm", "l2"], "--adv-train"),
        (["--quantize", "int4"], "--quantize"),
        (["--eps-sweep", "a,b"], "--eps-sweep"),
        (["--feature-keep", "0.5"], "--feature-keep"),
        (["--label", "y"], "--csv and --label"),
        (["--eps", "2"], "eps=2"),
    ],
)
def test_bad_options_exit_2_with_one_line(digits: Path, tmp_path: Path, capsys, extra: list[str], needle: str) -> None:
    out = tmp_path / "bad"
    code = main(["harden", "--model", str(digits), "--out", str(out), "--target-sparsity", "0.5", *FAST, *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "report.json").exists()


def test_missing_model_and_existing_out_exit_2(digits: Path, tmp_path: Path, capsys) -> None:
    assert main(["harden", "--out", str(tmp_path / "x")]) == 2
    assert "--model is required" in capsys.readouterr().err
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["harden", "--model", str(digits), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").exists()
