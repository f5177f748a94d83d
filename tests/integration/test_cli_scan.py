"""End to end through the CLI on the built-in digits data: train a tiny model, scan it, apply policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pruneguard.cli.app import main
from pruneguard.recipes import get_recipe
from pruneguard.utils.io import sha256_file

FAST = ["--clean-samples", "60", "--eps", "0.2,0.4", "--steps", "2", "--restarts", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    args = ["train", "--dataset", "digits", "--attack", "badnets", "--poison-rate", "0.1", "--target-label", "3"]
    code = main([*args, "--epochs", "2", "--width", "0.25", "--out", str(out)])
    assert code == 0
    return out / "model.safetensors"


def _scan(model: Path, out: Path, *extra: str) -> int:
    return main(["-q", "scan", "--model", str(model), "--out", str(out), *FAST, *extra])


def test_scan_writes_report_with_provenance(trained: Path, tmp_path: Path, capsys) -> None:
    source_hash = sha256_file(trained)
    out = tmp_path / "scan"
    assert _scan(trained, out, "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "report.json").read_text())
    assert printed["score"] == report["score"]
    for key in (
        "schema",
        "model_sha256",
        "clean_indices_hash",
        "clean_samples",
        "verdict",
        "score",
        "threshold",
        "suspected_target",
        "curve",
        "config",
        "scan",
        "seed",
        "versions",
        "git_commit",
        "started",
        "finished",
    ):
        assert key in report
    assert report["schema"] == "pruneguard.scan/1" and report["clean_samples"] == 60
    assert report["model_sha256"] == source_hash == sha256_file(trained)  # input untouched
    assert report["verdict"] in ("clean", "suspicious") and report["score"] >= 0
    assert [row["eps"] for row in report["curve"]] == [0.2, 0.4]
    assert 0 <= report["suspected_target"] < 10 and "policy" not in report
    assert report["scan"]["eps"] == [0.2, 0.4] and report["scan"]["restarts"] == 1
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "Sensitivity curve" in html and source_hash in html
    assert "restarts: 1" in (out / "config.yaml").read_text()
    # same seed, same clean split, same numbers; an existing run is refused without --overwrite
    assert _scan(trained, out) == 2 and "--overwrite" in capsys.readouterr().err
    assert _scan(trained, out, "--overwrite") == 0
    again = json.loads((out / "report.json").read_text())
    assert again["curve"] == report["curve"] and again["clean_indices_hash"] == report["clean_indices_hash"]


def test_the_finder_judges_the_classes_against_a_reference(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "finder"
    policy = tmp_path / "evidence.yaml"
    policy.write_text("no_backdoor_evidence: true\n")
    code = _scan(trained, out, "--policy", str(policy))
    report = json.loads((out / "report.json").read_text())
    finder = report["finder"]
    assert report["suspected_target"] in finder["candidates"]  # the sensitivity scan's class is a voice
    ratios = finder["reference"]["ratios"]
    assert set(ratios) == {"patch", "blend", "warp"} and finder["kind"] in ratios  # a warp's "ratios" are its sizes
    assert all(len(r) == 10 for r in ratios.values())  # the relative rule: the reference reversed to every class
    target = finder["suspected_target"]
    median = {k: sorted(r.values())[4:6] for k, r in ratios.items()}  # ten classes: the two middle ratios
    relative = {k: r[str(target)] / (sum(median[k]) / 2) for k, r in ratios.items()}
    assert finder["ratio"] == pytest.approx(relative[finder["kind"]])
    assert all(r[str(target)] == min(r.values()) for k, r in ratios.items() if k == finder["kind"])
    row = next(r for r in report["evidence"] if r["detector"].startswith("reference model"))
    assert row["lower_flags"] and row["flagged"] == (finder["ratio"] <= finder["cut"])
    default = get_recipe("default").suspect
    assert (finder["rule"], finder["cut"]) == (default.evidence, default.relative_cut)
    deciding = [r for r in report["evidence"] if r["decides"]]
    assert finder["evidence"] == any(r["flagged"] for r in deciding)  # the finder's rule, the same figures
    assert report["evidence"][0]["decides"] == finder["sensitivity_evidence"]
    flagged = [r["detector"] for r in deciding if r["flagged"]]
    assert report["verdict"] == ("suspicious" if flagged else "clean")
    assert code == (3 if flagged else 0) and report["policy"]["rules"][0]["measured"] == flagged
    html = (out / "report.html").read_text()
    assert "Suspect finder" in html and html.count("data:image/png;base64") >= 2
    # --no-finder: the sensitivity scan's figures alone, the same as with it
    assert _scan(trained, tmp_path / "quick", "--no-finder") == 0
    quick = json.loads((tmp_path / "quick" / "report.json").read_text())
    assert quick["finder"] is None and quick["curve"] == report["curve"] and len(quick["evidence"]) == 1
    assert quick["evidence"][0]["decides"] and quick["verdict"] == ("suspicious" if quick["score"] > 0.41 else "clean")


def test_policy_pass_and_fail_exit_codes(trained: Path, tmp_path: Path, capsys) -> None:
    passing, failing, unmeasured = tmp_path / "ok.yaml", tmp_path / "strict.yaml", tmp_path / "drop.yaml"
    passing.write_text("max_scan_score: 10\n")
    failing.write_text("max_scan_score: 0\n")
    unmeasured.write_text("max_scan_score: 10\nmax_accuracy_drop: 0.02\n")
    assert _scan(trained, tmp_path / "a", "--policy", str(passing), "--no-finder") == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["policy"]["passed"] and report["policy"]["file"] == str(passing)
    assert "policy: passed" in capsys.readouterr().out

    assert _scan(trained, tmp_path / "b", "--policy", str(failing), "--no-finder") == 3
    report = json.loads((tmp_path / "b" / "report.json").read_text())  # the report is written before exit 3
    (rule,) = report["policy"]["rules"]
    assert rule["rule"] == "max_scan_score" and not rule["passed"] and rule["limit"] == 0.0
    assert "class='fail'" in (tmp_path / "b" / "report.html").read_text()
    assert "FAILED (max_scan_score)" in capsys.readouterr().out

    assert _scan(trained, tmp_path / "c", "--policy", str(unmeasured), "--no-finder") == 3
    rules = json.loads((tmp_path / "c" / "report.json").read_text())["policy"]["rules"]
    assert [r["passed"] for r in rules] == [False, True] and "not measured" in rules[0]["note"]


def test_bad_policy_exits_2_and_writes_nothing(trained: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_scan_score: 0.1\nmax_sacn_score: 0.2\n")
    out = tmp_path / "o"
    assert _scan(trained, out, "--policy", str(bad)) == 2
    err = capsys.readouterr().err
    assert "max_sacn_score" in err and err.count("\n") == 1 and "Traceback" not in err
    assert _scan(trained, out, "--policy", str(tmp_path / "missing.yaml")) == 2
    assert "--policy" in capsys.readouterr().err
    assert not out.exists()
