"""End to end through the CLI on the built-in digits data: train a backdoored tiny model, purify it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pruneguard.cli.app import app, main
from pruneguard.models import load_model, read_meta
from pruneguard.scan.suspect import combine_suspects, vote_suspects
from pruneguard.utils.io import sha256_file

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train")
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--attack",
            "badnets",
            "--poison-rate",
            "0.1",
            "--epochs",
            "2",
            "--width",
            "0.25",
            "--out",
            str(out / "run"),
            "--overwrite",
        ]
    )
    assert code == 0
    return out / "run" / "model.safetensors"


def test_train_writes_model_with_holdout(trained: Path) -> None:
    meta = read_meta(trained)
    assert meta is not None and meta.dataset == "digits"
    assert meta.holdout_indices and len(meta.holdout_indices) > 100
    assert meta.extra["attack"]["name"] == "badnets"
    result = json.loads((trained.parent / "result.json").read_text())
    assert result["model_sha256"] == sha256_file(trained)
    assert (trained.parent / "config.yaml").is_file()


def test_purify_end_to_end(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "purify"
    source_hash = sha256_file(trained)
    res = runner.invoke(
        app,
        [
            "purify",
            "--model",
            str(trained),
            "--out",
            str(out),
            "--iterations",
            "20",
            "--clean-fraction",
            "0.1",
            "--eval-attack",
            "badnets",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    saved = json.loads((out / "report.json").read_text())
    for key in (
        "model_sha256",
        "clean_samples",
        "before",
        "after",
        "pruned_neurons",
        "total_neurons",
        "threshold",
        "seconds",
        "config",
        "versions",
        "curve",
        "masks",
    ):
        assert key in saved
    assert saved["model_sha256"] == source_hash == sha256_file(trained)  # input untouched
    assert report["pruned_neurons"] == saved["pruned_neurons"]
    assert 0 <= saved["after"]["asr"] <= 1 and 0 <= saved["after"]["accuracy"] <= 1
    assert len(saved["masks"]) == saved["total_neurons"]
    assert saved["curve"][0]["pruned"] == 0
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "Pruning curve" in html
    meta = read_meta(out / "purified.safetensors")
    assert meta.extra["purified_from"]["model_sha256"] == source_hash
    assert meta.extra["purified_from"]["report_sha256"] == sha256_file(out / "report.json")
    # an existing run is refused without --overwrite
    again = runner.invoke(app, ["purify", "--model", str(trained), "--out", str(out), "--iterations", "2"])
    assert again.exit_code != 0


def _run_bad(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--clean-fraction", "0"], "--clean-fraction"),
        (["--clean-fraction", "1.5"], "--clean-fraction"),
        (["--threshold", "lots"], "--threshold"),
        (["--anp-eps", "3"], "--eps"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(trained: Path, tmp_path: Path, capsys, extra, needle) -> None:
    out = tmp_path / "o"
    code, err = _run_bad(["purify", "--model", str(trained), "--out", str(out), *extra], capsys)
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_bad_model_files_exit_2_and_write_nothing(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    missing = tmp_path / "nope.safetensors"
    code, err = _run_bad(["purify", "--model", str(missing), "--out", str(out)], capsys)
    assert code == 2 and "--model" in err and not out.exists()
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(trained.read_bytes()[:500])
    code, err = _run_bad(["purify", "--model", str(corrupt), "--out", str(out)], capsys)
    assert code == 2 and "corrupt" in err and not out.exists()
    code, err = _run_bad(["purify", "--model", str(trained), "--out", str(out), "--dataset", "fashion_mnist"], capsys)
    assert code == 2 and "shape" in err and not out.exists()
    code, err = _run_bad(["purify", "--model", str(trained), "--out", str(trained)], capsys)
    assert code == 2 and "--out" in err
    code, err = _run_bad(["train", "--arch", "no_such_arch", "--dataset", "digits", "--out", str(out)], capsys)
    assert code == 2 and "no_such_arch" in err and not (out / "model.safetensors").exists()


def test_purify_plain_state_dict_with_arch(trained: Path, tmp_path: Path) -> None:
    import torch

    from pruneguard.models import load_model

    model, meta = load_model(trained)
    pt = tmp_path / "weights.pt"
    torch.save(model.state_dict(), pt)
    out = tmp_path / "p"
    args = ["purify", "--model", str(pt), "--out", str(out), "--iterations", "5", "--clean-fraction", "0.1"]
    code = main([*args, "--dataset", "digits", "--arch", "small_cnn", "--arch-kwargs", json.dumps(meta.kwargs)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert "may overlap" in report["clean_source"]  # no held-out indices in a plain state dict
    assert main([*args, "--overwrite"]) == 2  # no metadata and no --arch
    assert main([*args, "--overwrite", "--dataset", "digits", "--arch", "small_cnn", "--arch-kwargs", "[1]"]) == 2


def test_purify_policy_exit_codes(trained: Path, tmp_path: Path) -> None:
    passing = tmp_path / "pass.yaml"
    passing.write_text("max_accuracy_drop: 1.0\n")
    failing = tmp_path / "fail.yaml"
    failing.write_text("max_accuracy_drop: 1.0\nmax_scan_score: 0.5\n")  # purify does not measure a scan score
    base = ["purify", "--model", str(trained), "--iterations", "3", "--clean-fraction", "0.1"]
    assert main([*base, "--out", str(tmp_path / "a"), "--policy", str(passing)]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--policy", str(failing)]) == 3
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    rules = {r["rule"]: r for r in report["policy"]["rules"]}
    assert rules["max_accuracy_drop"]["passed"] and not rules["max_scan_score"]["passed"]
    assert "Policy" in (tmp_path / "b" / "report.html").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_acuracy_drop: 0.1\n")
    assert main([*base, "--out", str(tmp_path / "c"), "--policy", str(bad)]) == 2
    assert not (tmp_path / "c").exists()


def test_purify_anp_fast_is_recorded_and_its_state_is_not_resumed_by_the_reference(
    trained: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fast"
    base = ["purify", "--model", str(trained), "--out", str(out), "--iterations", "4", "--clean-fraction", "0.1"]
    assert main([*base, "--anp-fast"]) == 0
    fast = json.loads((out / "report.json").read_text())
    assert fast["config"]["anp_fast"] is True
    assert main([*base, "--resume"]) == 0  # the reference run must not pick up the fast run's masks
    ref = json.loads((out / "report.json").read_text())
    assert ref["config"]["anp_fast"] is False
    assert ref["masks"] != fast["masks"]


def test_purify_unlearn_reports_each_stage_and_keeps_pruned_neurons(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "unlearn"
    args = ["purify", "--model", str(trained), "--out", str(out), "--iterations", "10", "--clean-fraction", "0.1"]
    args += ["--eval-attack", "badnets", "--unlearn", "--unlearn-steps", "30", "--unlearn-epochs", "2"]
    args += ["--prune-count", "2", "--unlearn-trigger", "both"]
    assert main(args) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["scan"] is not None  # untargeted ANP: the scan names the class to reverse a trigger to
    assert rep["unlearn"]["trigger"]["target"] == rep["scan"]["suspected_target"]
    assert 0 < rep["unlearn"]["trigger"]["mask_share"] <= 1
    assert [t["kind"] for t in rep["unlearn"]["triggers"]] == ["patch", "blend"]
    assert set(rep["after_pruning"]) >= {"accuracy", "asr"}
    assert rep["after_pruning"] != rep["after"]  # the unlearning changed the model
    assert "unlearning" in (out / "report.html").read_text()
    purified, _ = load_model(out / "purified.safetensors")
    zeroed = 0  # neurons whose scale (BatchNorm) or whole weight row (conv/linear without a norm) is zero
    for m in purified.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            zeroed += int((m.weight == 0).sum())
        elif isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            zeroed += int((m.weight.flatten(1).abs().sum(1) == 0).sum())
    assert zeroed >= 2  # the pruned neurons stayed zero through the unlearning fine-tune


def test_purify_unlearn_rounds_reverse_again_on_the_unlearned_model(trained: Path, tmp_path: Path) -> None:
    args = ["purify", "--model", str(trained), "--iterations", "10", "--clean-fraction", "0.1", "--prune-count", "2"]
    args += ["--eval-attack", "badnets", "--unlearn", "--unlearn-steps", "30", "--unlearn-epochs", "2"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--unlearn-rounds", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = (json.loads((tmp_path / d / "report.json").read_text())["unlearn"] for d in ("one", "two"))
    assert [t["round"] for t in two["triggers"]] == [1, 2] and two["rounds"] == 2
    assert "epochs × 2 round(s)" in (tmp_path / "two" / "report.html").read_text()
    assert two["triggers"][0] == one["triggers"][0] | {"seconds": two["triggers"][0]["seconds"]}  # same first round
    assert two["triggers"][1]["mask_l1"] != two["triggers"][0]["mask_l1"]  # reversed anew on the unlearned model
    m1, _ = load_model(tmp_path / "one" / "purified.safetensors")
    m2, _ = load_model(tmp_path / "two" / "purified.safetensors")
    assert any(not torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))
    # distilling the pruned model while unlearning: same reversed trigger, other weights, reported
    assert main([*args, "--unlearn-distill", "2", "--out", str(tmp_path / "kd")]) == 0
    kd = json.loads((tmp_path / "kd" / "report.json").read_text())["unlearn"]
    assert kd["distill"] == 2.0 and one["distill"] == 0.0
    assert "distilling the pruned model, weight 2" in (tmp_path / "kd" / "report.html").read_text()
    assert kd["triggers"][0] == one["triggers"][0] | {"seconds": kd["triggers"][0]["seconds"]}
    m3, _ = load_model(tmp_path / "kd" / "purified.safetensors")
    assert any(not torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m3.state_dict().values(), strict=True))
    # the teacher with its BatchNorm statistics recomputed on the clean split: recorded, other weights
    rc = [*args, "--unlearn-distill", "2", "--unlearn-teacher", "recalibrated", "--out", str(tmp_path / "rc")]
    assert main([*rc, "--unlearn-distill-suppress", "0.5"]) == 0
    rc_unl = json.loads((tmp_path / "rc" / "report.json").read_text())["unlearn"]
    assert rc_unl["teacher"] == "recalibrated" and rc_unl["distill_suppress"] == 0.5
    assert kd["teacher"] == "pruned" and one["teacher"] is None and kd["distill_suppress"] == 0.0
    html = (tmp_path / "rc" / "report.html").read_text()
    assert "(BatchNorm recalibrated), weight 2, 50% of its suspected-class probability taken out" in html
    m5, _ = load_model(tmp_path / "rc" / "purified.safetensors")
    assert any(not torch.equal(a, b) for a, b in zip(m3.state_dict().values(), m5.state_dict().values(), strict=True))
    # targeted PGD copies towards the suspect while unlearning: recorded, and they change the weights
    assert main([*args, "--unlearn-adv-eps", "0.05", "--out", str(tmp_path / "adv")]) == 0
    adv = json.loads((tmp_path / "adv" / "report.json").read_text())["unlearn"]
    assert adv["adv_eps"] == 0.05 and adv["adv_steps"] == 5 and one["adv_eps"] == 0.0
    assert "targeted PGD copies towards the target, eps 0.05" in (tmp_path / "adv" / "report.html").read_text()
    m4, _ = load_model(tmp_path / "adv" / "purified.safetensors")
    assert any(not torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m4.state_dict().values(), strict=True))


def test_purify_unlearn_refuses_tabular_data(tmp_path: Path, capsys) -> None:
    out = tmp_path / "tab"
    assert main(["train", "--dataset", "breast_cancer", "--arch", "mlp", "--epochs", "1", "--out", str(out)]) == 0
    code, err = _run_bad(
        ["purify", "--model", str(out / "model.safetensors"), "--out", str(tmp_path / "p"), "--unlearn"], capsys
    )
    assert code == 2 and "--unlearn" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p" / "report.json").exists()


def test_purify_adv_eps_out_of_range_is_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "u"
    code, err = _run_bad(["purify", "--model", str(trained), "--out", str(out), "--unlearn-adv-eps", "2"], capsys)
    assert (
        code == 2 and "unlearn_adv_eps" in err.replace("-", "_") and "2" in err and len(err.strip().splitlines()) == 1
    )
    assert not out.exists()


def test_purify_unknown_unlearn_teacher_is_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "u"
    code, err = _run_bad(["purify", "--model", str(trained), "--out", str(out), "--unlearn-teacher", "dense"], capsys)
    assert code == 2 and "unlearn_teacher" in err.replace("-", "_") and "dense" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_purify_distill_suppress_out_of_range_is_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "u"
    argv = ["purify", "--model", str(trained), "--out", str(out), "--unlearn-distill-suppress", "1.5"]
    code, err = _run_bad(argv, capsys)
    assert code == 2 and "unlearn_distill_suppress" in err.replace("-", "_") and "1.5" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_purify_teacher_options_without_distillation_are_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "u"
    argv = ["purify", "--model", str(trained), "--out", str(out), "--unlearn", "--unlearn-distill-suppress", "0.5"]
    code, err = _run_bad(argv, capsys)
    assert code == 2 and "--unlearn-distill-suppress=0.5" in err and "--unlearn-distill > 0" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    code, err = _run_bad([*argv[:-2], "--unlearn-teacher", "recalibrated"], capsys)
    assert code == 2 and "--unlearn-teacher=recalibrated" in err and len(err.strip().splitlines()) == 1
    code, err = _run_bad([*argv[:-2], "--unlearn-distill-augment"], capsys)
    assert code == 2 and "--unlearn-distill-augment=True" in err and len(err.strip().splitlines()) == 1


def test_purify_unknown_unlearn_trigger_is_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "u"
    code, err = _run_bad(["purify", "--model", str(trained), "--out", str(out), "--unlearn-trigger", "star"], capsys)
    assert code == 2 and "unlearn_trigger" in err.replace("-", "_") and len(err.strip().splitlines()) == 1
    assert not out.exists()


def _purify_towards(trained: Path, out: Path, anp_target: str) -> dict:
    """A short purify run with --anp-target and unlearning; its report."""
    args = ["purify", "--model", str(trained), "--out", str(out), "--iterations", "5", "--clean-fraction", "0.1"]
    args += ["--anp-target", anp_target, "--unlearn", "--unlearn-steps", "20", "--unlearn-epochs", "1"]
    assert main(args) == 0
    return json.loads((out / "report.json").read_text())


def test_purify_reversal_target_drives_targeted_anp_and_the_unlearning(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "rev"
    rep = _purify_towards(trained, out, "reversal")
    rev = rep["reversal_scan"]
    sizes = rev["kinds"][rev["kind"]]["mask_l1"]
    assert len(sizes) == 10 and rev["suspected_target"] == min(range(10), key=sizes.__getitem__)
    assert rep["config"]["anp_target"] == "reversal" and rep["scan"] is None
    assert rep["unlearn"]["trigger"]["target"] == rev["suspected_target"]
    assert "reversal scan" in (out / "report.html").read_text()


def test_purify_combined_target_runs_both_scans_and_unlearns_to_their_choice(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "comb"
    rep = _purify_towards(trained, out, "combined")
    rev, scan, comb = rep["reversal_scan"], rep["scan"], rep["reversal_scan"]["combined"]
    expected = combine_suspects(
        scan["suspected_target"], scan["score"], scan["threshold"], rev["suspected_target"], rev["anomaly_index"]
    )
    assert (comb["suspected_target"], comb["decided_by"]) == expected
    assert rep["anp"]["target_class"] == comb["suspected_target"] == rep["unlearn"]["trigger"]["target"]
    assert "combined with the sensitivity scan" in (out / "report.html").read_text()


def test_purify_vote_target_counts_the_three_voices_and_unlearns_to_their_choice(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "vote"
    rep = _purify_towards(trained, out, "vote")
    rev, scan, vote = rep["reversal_scan"], rep["scan"], rep["reversal_scan"]["vote"]
    assert set(rev["kinds"]) == {"patch", "blend"} and scan is not None
    expected = vote_suspects(scan["suspected_target"], rev["kinds"])
    if expected[1] == "vote":  # a majority: no reference model
        assert (vote["suspected_target"], vote["decided_by"]) == expected and "reference" not in vote
    else:
        assert vote["decided_by"] == "reference"
    assert rep["anp"]["target_class"] == vote["suspected_target"] == rep["unlearn"]["trigger"]["target"]
    assert "voted with the sensitivity scan" in (out / "report.html").read_text()


def test_purify_vote_without_a_majority_asks_a_reference_model(trained: Path, tmp_path: Path, monkeypatch) -> None:
    """The voices forced apart (the digits toy's agree): a reference model trained on the clean split judges the
    classes they name, and its choice drives targeted ANP and the unlearning; --vote-tiebreak strongest keeps
    the reversal's strongest kind."""
    import pruneguard.workflows.purify as wp

    monkeypatch.setattr(wp, "vote_suspects", lambda s, kinds: (int(kinds["patch"]["suspected_target"]), "reversal"))
    monkeypatch.setattr(wp, "vote_candidates", lambda s, kinds: [0, 5])
    out = tmp_path / "ref"
    rep = _purify_towards(trained, out, "vote")
    vote = rep["reversal_scan"]["vote"]
    assert vote["decided_by"] == "reference" and vote["candidates"] == [0, 5]
    ref = vote["reference"]
    assert set(ref["sizes"]) == {"patch", "blend"} and all(set(d) == {"0", "5"} for d in ref["sizes"].values())
    for kind, sizes in ref["sizes"].items():  # the ratios are the suspect's scan sizes over the reference's
        for c, size in sizes.items():
            suspect = rep["reversal_scan"]["kinds"][kind]["mask_l1"][int(c)]
            assert ref["ratios"][kind][c] == pytest.approx(suspect / size)
    best = min((0, 5), key=lambda c: min(r[str(c)] for r in ref["ratios"].values()))
    assert rep["anp"]["target_class"] == vote["suspected_target"] == best == rep["unlearn"]["trigger"]["target"]
    assert 0 < ref["train_accuracy"] <= 1 and ref["seconds"] > 0
    assert "a reference model trained on the clean split judged" in (out / "report.html").read_text()

    out2 = tmp_path / "strongest"
    args = ["purify", "--model", str(trained), "--out", str(out2), "--iterations", "5", "--clean-fraction", "0.1"]
    assert main([*args, "--anp-target", "vote", "--vote-tiebreak", "strongest"]) == 0
    vote2 = json.loads((out2 / "report.json").read_text())["reversal_scan"]["vote"]
    assert vote2["decided_by"] == "reversal" and "reference" not in vote2


def test_purify_vote_tiebreak_needs_the_vote(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tb"
    argv = ["purify", "--model", str(trained), "--out", str(out), "--anp-target", "reversal"]
    code, err = _run_bad([*argv, "--vote-tiebreak", "strongest"], capsys)
    assert code == 2 and "--vote-tiebreak=strongest" in err and "--anp-target vote" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    code, err = _run_bad([*argv, "--anp-target", "vote", "--vote-tiebreak", "coin"], capsys)
    assert code == 2 and "vote_tiebreak" in err.replace("-", "_") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "params,needles",
    [
        ('{"freq": 3}', ["freq", "accepted: delta, frequency, test_delta"]),
        ('{"delta": 20}', ["delta=20", "20/255"]),
        ("[1]", ["--attack-params", "JSON object"]),
    ],
)
def test_train_bad_attack_params_are_one_line_and_touch_nothing(
    tmp_path: Path, capsys, params: str, needles: list[str]
) -> None:
    out = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--attack", "sig", "--attack-params", params, "--out", str(out)]
    code, err = _run_bad(args, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and not out.exists()
    for needle in needles:
        assert needle in err


def test_train_attack_params_reach_the_attack_and_the_model_file(tmp_path: Path) -> None:
    out = tmp_path / "sig"
    args = ["train", "--dataset", "digits", "--attack", "sig", "--epochs", "1", "--out", str(out)]
    assert main([*args, "--attack-params", '{"delta": 0.3, "frequency": 3}']) == 0
    params = read_meta(out / "model.safetensors").extra["attack"]["params"]
    assert params["delta"] == pytest.approx(0.3) and params["frequency"] == 3


def test_train_input_aware_trains_the_victim_jointly_and_a_purify_run_reads_its_trigger(tmp_path: Path) -> None:
    out = tmp_path / "iab"
    args = ["train", "--dataset", "digits", "--attack", "input_aware", "--epochs", "6", "--batch-size", "32"]
    params = '{"mask_epochs": 1, "hidden": 8, "mask_density": 0.1}'
    assert main([*args, "--poison-rate", "0.1", "--no-augment", "--attack-params", params, "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["attack"]["poisoned"] == "joint" and result["attack"]["params"]["mode"] == "joint"
    assert result["attack"]["trigger_net"]["sha256"] == sha256_file(out / "trigger_net.safetensors")
    assert result["test"]["asr"] > 0.8 and result["test"]["accuracy"] > 0.9  # 0.91 and 0.98 here; chance 0.1
    purified = tmp_path / "purified"
    code = main(
        ["purify", "--model", str(out / "model.safetensors"), "--iterations", "5", "--eval-attack", "input_aware"]
        + ["--out", str(purified)]
    )
    assert code == 0
    report = json.loads((purified / "report.json").read_text())
    assert report["before"]["asr"] == pytest.approx(result["test"]["asr"], abs=0.05)


def test_purify_cap_keeps_the_threshold_from_pruning_past_the_clean_split_allowance(
    trained: Path, tmp_path: Path
) -> None:
    args = ["purify", "--model", str(trained), "--iterations", "10", "--clean-fraction", "0.1", "--threshold", "1.0"]
    assert main([*args, "--cap-acc-drop", "0.0", "--out", str(tmp_path / "cap")]) == 0
    rep = json.loads((tmp_path / "cap" / "report.json").read_text())
    assert rep["config"]["cap_acc_drop"] == 0.0 and "capped at" in rep["pruning_rule"]
    assert rep["pruned_neurons"] < rep["total_neurons"]  # threshold 1.0 alone prunes every neuron
    base = rep["curve"][0]["clean_accuracy"]
    kept = next(r for r in rep["curve"] if r["pruned"] == rep["pruned_neurons"])
    assert kept["clean_accuracy"] >= base
