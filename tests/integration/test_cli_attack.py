"""``pruneguard attack`` end to end: one evasion attack against a model file, result.json and config.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pruneguard.cli.app import main
from pruneguard.utils.io import sha256_file


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("attack")
    out = {}
    for name, args in {
        "digits": ["--dataset", "digits", "--width", "0.25", "--epochs", "2"],
        "digits2": ["--dataset", "digits", "--width", "0.25", "--epochs", "1", "--seed", "1"],
        "cancer": ["--dataset", "breast_cancer", "--arch", "mlp", "--epochs", "5"],
    }.items():
        assert main(["train", "--out", str(tmp / name), *args]) == 0
        out[name] = tmp / name / "model.safetensors"
    return out


def test_pgd_attack_writes_result_and_config(models: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "pgd"
    args = ["attack", "--model", str(models["digits"]), "--attack", "pgd", "--eps", "0.1", "--steps", "5"]
    assert main([*args, "--n-samples", "40", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "result.json").read_text())
    assert printed["robust_accuracy"] == saved["robust_accuracy"] <= saved["clean_accuracy"]
    assert saved["n_samples"] == 40 and saved["model_sha256"] == sha256_file(models["digits"])
    assert saved["attack"]["params"]["steps"] == 5 and saved["attack"]["params"]["step_size"] == pytest.approx(0.05)
    assert saved["mean_perturbation"] <= 0.1 + 1e-6
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["attack"] == "pgd" and config["eps"] == 0.1
    assert main([*args, "--out", str(out)]) == 2  # an existing run is not overwritten


def test_fgsm_l2_pgd_and_transfer(models: dict[str, Path], tmp_path: Path) -> None:
    base = ["--model", str(models["digits"]), "--n-samples", "24"]
    assert main(["attack", *base, "--attack", "fgsm", "--out", str(tmp_path / "f")]) == 0
    assert (
        main(["attack", *base, "--attack", "pgd", "--norm", "l2", "--eps", "1.0", "--out", str(tmp_path / "l2")]) == 0
    )
    l2 = json.loads((tmp_path / "l2" / "result.json").read_text())
    assert l2["attack"]["params"]["norm"] == "l2" and l2["mean_perturbation"] <= 1.0 + 1e-5
    src = ["--attack", "transfer", "--source", str(models["digits2"]), "--steps", "5"]
    assert main(["attack", *base, *src, "--out", str(tmp_path / "t")]) == 0
    t = json.loads((tmp_path / "t" / "result.json").read_text())
    assert t["attack"]["source"] == str(models["digits2"]) and t["attack"]["params"]["attack"] == "pgd"


def test_tabular_square_attack_uses_standardised_units(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sq"
    args = ["attack", "--model", str(models["cancer"]), "--attack", "square", "--eps", "0.5", "--queries", "30"]
    assert main([*args, "--n-samples", "32", "--out", str(out)]) == 0
    r = json.loads((out / "result.json").read_text())
    assert r["threat_model"]["eps_units"] == "standard deviations of each feature"
    assert 0 <= r["robust_accuracy"] <= r["clean_accuracy"] and r["n_samples"] == 32
    page = (out / "report.html").read_text()  # tabular rows: the sentence counts rows, no pictures
    assert r["examples"] is None and "on 32 test rows" in page and "<img" not in page


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--attack", "fgsm", "--steps", "3"], "--steps=3 is not a parameter of --attack=fgsm"),
        (["--attack", "badnets"], "--attack='badnets' is not accepted"),
        (["--attack", "no_such"], "no_such"),
        (["--attack", "transfer"], "--source"),
        (["--attack", "fgsm", "--norm", "l2"], "L-inf only"),
        (["--eps", "3"], "did you mean 3/255"),
        (["--eps", "-1"], "--eps"),
        (["--norm", "l1"], "--norm"),
    ],
)
def test_bad_options_exit_2(models: dict[str, Path], tmp_path: Path, capsys, extra: list[str], needle: str) -> None:
    out = tmp_path / "bad"
    code = main(["attack", "--model", str(models["digits"]), "--out", str(out), "--n-samples", "8", *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1
    assert not out.exists()
