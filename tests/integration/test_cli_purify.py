"""End to end through the CLI on the built-in digits data: train a backdoored tiny model, purify it with recipes."""

from __future__ import annotations

import json
from html import escape as html_escape
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pruneguard.cli.app import app, main
from pruneguard.models import load_model, read_meta
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


# short versions of the steps, so that each run takes a few seconds on the digits toy; its 29 validation images
# cannot hold the 2-point limit (one image is 3.4 points), so the steps run only when asked to repair unguarded
FAST = [
    "anp.iterations=10",
    "repair.reversal_steps=30",
    "repair.epochs=1",
    "eval_attack=badnets",
    "unguarded_repair=true",
]


def _run_bad(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


def _sets(*items: str) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def _purify(trained: Path, out: Path, *extra: str, sets: tuple[str, ...] = tuple(FAST)) -> int:
    return main(["purify", "--model", str(trained), "--out", str(out), "--clean-size", "0.1", *_sets(*sets), *extra])


def test_purify_default_recipe_end_to_end(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "purify"
    source_hash = sha256_file(trained)
    args = ["purify", "--model", str(trained), "--out", str(out), "--clean-size", "0.1", *_sets(*FAST)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    first = res.stdout.splitlines()[0]
    saved = json.loads((out / "report.json").read_text())
    assert first == saved["verdict"]["sentence"] and first.startswith(("Purified", "No evidence"))
    assert "validation accuracy" in first and "%" in first
    for key in ("model_sha256", "clean_samples", "used_samples", "validation_samples", "before", "after", "suspect"):
        assert key in saved
    assert saved["recipe"] == "default (modified)" and saved["config"]["recipe"]["anp"]["iterations"] == 10
    assert saved["used_samples"] + saved["validation_samples"] == saved["clean_samples"]
    assert saved["validation_samples"] == round(0.2 * saved["clean_samples"])
    assert saved["model_sha256"] == source_hash == sha256_file(trained)  # input untouched
    assert 0 <= saved["after"]["asr"] <= 1 and 0 <= saved["after"]["validation_accuracy"] <= 1
    html = (out / "report.html").read_text()
    body = html.split("<body>", 1)[1]
    assert body.index(html_escape(saved["verdict"]["sentence"].split(";")[0][:40])) < body.index("<h2>")  # first
    meta = read_meta(out / "purified.safetensors")
    assert meta.extra["purified_from"]["model_sha256"] == source_hash
    assert meta.extra["purified_from"]["config_sha256"] == sha256_file(out / "config.yaml")
    assert saved["purified_sha256"] == sha256_file(out / "purified.safetensors")
    # report.json is written last: a folder with it is complete
    assert (out / "report.json").stat().st_mtime_ns >= (out / "purified.safetensors").stat().st_mtime_ns
    again = runner.invoke(app, ["purify", "--model", str(trained), "--out", str(out)])
    assert again.exit_code != 0  # an existing run is refused without --overwrite


def test_set_onnx_writes_a_checked_onnx_model_beside_the_purified_one(trained: Path, tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    from pruneguard.data.tensors import to_float
    from pruneguard.workflows.common import load_for_defense

    out = tmp_path / "p"
    assert _purify(trained, out, "--recipe", "paper", sets=("anp.iterations=12", "onnx=true")) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["onnx"]["file"] == "purified.onnx" and rep["onnx"]["argmax_agreement"] == 1.0
    assert rep["onnx"]["max_abs_diff"] < 1e-4 and "test rows of digits" in rep["onnx"]["inputs"]
    assert "purified.onnx: onnxruntime logits within" in (out / "report.html").read_text()
    model, _ = load_model(out / "purified.safetensors")
    x = to_float(load_for_defense(trained).test.x[:64]).float()
    session = ort.InferenceSession(str(out / "purified.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model.eval()(x).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_written_config_reproduces_the_run(trained: Path, tmp_path: Path) -> None:
    assert _purify(trained, tmp_path / "a", "--recipe", "paper", sets=("anp.iterations=15",)) == 0
    first = json.loads((tmp_path / "a" / "report.json").read_text())
    assert main(["purify", "--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "b")]) == 0
    second = json.loads((tmp_path / "b" / "report.json").read_text())
    assert second["purified_weights_sha256"] == first["purified_weights_sha256"]
    assert second["config"]["recipe"] == first["config"]["recipe"] and first["recipe"] == "paper (modified)"
    # a flag given beside --config wins over the file
    assert (
        main(["purify", "--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "c"), "--seed", "5"])
        == 0
    )
    third = json.loads((tmp_path / "c" / "report.json").read_text())
    assert third["seed"] == 5 and third["masks"] != first["masks"]


def test_purify_help_lists_at_most_15_options() -> None:
    res = runner.invoke(app, ["purify", "--help"], env={"COLUMNS": "200"})
    options = [line.split()[0] for line in res.stdout.splitlines() if line.strip().startswith("--")]
    assert 10 <= len(options) <= 15, options
    assert {"--model", "--out", "--recipe", "--config", "--set", "--policy", "--json"} <= set(options)


def test_paper_recipe_is_anp_as_published(trained: Path, tmp_path: Path) -> None:
    """--recipe paper: no scan, untargeted ANP with the paper's settings on all the clean data, threshold 0.2."""
    from pruneguard.pruning.anp import ANPConfig, anp_optimize
    from pruneguard.pruning.selection import select_by_threshold
    from pruneguard.workflows.common import draw_clean_split, load_for_defense

    assert _purify(trained, tmp_path / "p", "--recipe", "paper", sets=("anp.iterations=12",)) == 0
    rep = json.loads((tmp_path / "p" / "report.json").read_text())
    assert rep["suspect"] == {"target": None, "evidence": False, "reasons": ["no scan was asked for"]}
    assert rep["validation_samples"] == 0 and rep["steps"] == ["anp"] and "guard" not in rep
    loaded = load_for_defense(trained)
    clean, _ = draw_clean_split(loaded, clean_fraction=0.1, clean_samples=None, seed=0)
    result = anp_optimize(loaded.model, clean, ANPConfig(iterations=12, seed=0))
    assert [m["mask"] for m in rep["masks"]] == pytest.approx(result.masks.tolist())
    assert rep["pruned_neurons"] == select_by_threshold(result.masks, 0.2).numel()
    assert rep["verdict"]["status"] == ("purified" if rep["pruned_neurons"] else "unchanged")


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--clean-size", "0"], "--clean-size='0'"),
        (["--clean-size", "1.5"], "--clean-size='1.5'"),
        (["--clean-size", "lots"], "--clean-size='lots'"),
        (["--set", "select.threshold=lots"], "recipe.select.threshold='lots'"),
        (["--set", "anp.eps=3"], "recipe.anp.eps=3"),
        (["--set", "anp.epz=3"], "accepted: enabled, eps"),
        (["--set", "anp.eps"], "FIELD=VALUE"),
        (["--recipe", "papr"], "did you mean paper"),
        (["--set", "suspect.method=none"], "suspect.require_evidence"),
        (["--set", "repair.suppress=1.5"], "recipe.repair.suppress=1.5"),
        (["--recipe", "paper", "--set", "repair.method=unlearn"], "repair.method=unlearn"),
        (["--set", "seed=x"], "--seed='x'"),
        (["--set", "eval_attack=fgsm"], "eval_attack='fgsm' is not a backdoor attack; accepted: badnets, "),
        (["--set", "eval_attack=badnets", "--set", "target_label=42"], "target_label=42 is outside [0, 9]"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(trained: Path, tmp_path: Path, capsys, extra, needle) -> None:
    out = tmp_path / "o"
    code, err = _run_bad(["purify", "--model", str(trained), "--out", str(out), *extra], capsys)
    assert code == 2, err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_bad_config_files_are_one_line(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text('a: &a ["x", "x"]\nb: &b [*a, *a]\nc: [*b, *b]\n')
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("recipe: {anp: {iterations: 5, colour: red}}\n")
    for path, needle in ((bomb, "aliases"), (listing, "mapping"), (unknown, "recipe.anp.colour")):
        code, err = _run_bad(["purify", "--config", str(path), "--model", str(trained), "--out", str(out)], capsys)
        assert code == 2 and needle in err and err.count("\n") == 1, err
    code, err = _run_bad(["purify", "--model", str(trained)], capsys)
    assert code == 2 and "--out is required" in err
    assert not out.exists()


def test_a_bad_layout_setting_exits_2_before_any_work(trained: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "o"
    monkeypatch.setenv("PRUNEGUARD_LAYOUT", "nhwc")
    code, err = _run_bad(["purify", "--model", str(trained), "--out", str(out)], capsys)
    assert code == 2 and "PRUNEGUARD_LAYOUT='nhwc'" in err and err.count("\n") == 1, err
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
    code, err = _run_bad(["purify", "--model", str(trained), "--out", str(out), "--set", "suspect.target=99"], capsys)
    assert code == 2 and "recipe.suspect.target=99" in err and not out.exists()
    code, err = _run_bad(["train", "--arch", "no_such_arch", "--dataset", "digits", "--out", str(out)], capsys)
    assert code == 2 and "no_such_arch" in err and not (out / "model.safetensors").exists()


def test_purify_plain_state_dict_with_arch(trained: Path, tmp_path: Path) -> None:
    model, meta = load_model(trained)
    pt = tmp_path / "weights.pt"
    torch.save(model.state_dict(), pt)
    out = tmp_path / "p"
    args = ["purify", "--model", str(pt), "--out", str(out), "--recipe", "paper", "--clean-size", "0.1"]
    args += _sets("anp.iterations=5")
    kwargs = f"arch_kwargs={json.dumps(meta.kwargs)}"
    assert main([*args, "--dataset", "digits", "--arch", "small_cnn", "--set", kwargs]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "may overlap" in report["clean_source"]  # no held-out indices in a plain state dict
    assert main([*args, "--overwrite"]) == 2  # no metadata and no --arch
    assert main([*args, "--overwrite", "--dataset", "digits", "--arch", "small_cnn", "--set", "arch_kwargs=[1]"]) == 2


def test_purify_policy_exit_codes(trained: Path, tmp_path: Path) -> None:
    passing = tmp_path / "pass.yaml"
    passing.write_text("max_accuracy_drop: 1.0\n")
    failing = tmp_path / "fail.yaml"
    failing.write_text("max_accuracy_drop: 1.0\nmax_scan_score: 0.5\n")  # purify does not measure a scan score
    base = ["purify", "--model", str(trained), "--recipe", "paper", "--clean-size", "0.1", *_sets("anp.iterations=3")]
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


def test_a_purification_that_breaks_the_guard_exits_3_with_the_failed_verdict_first(
    trained: Path, tmp_path: Path
) -> None:
    """Every neuron with a mask <= 1 pruned, no cap: the validation accuracy collapses past the 2-point limit."""
    out = tmp_path / "broken"
    sets = (
        "anp.iterations=5",
        "validation_fraction=0.2",
        "max_acc_drop=0.02",
        "unguarded_repair=true",  # 29 validation images: the steps run, and the limit is judged, only when asked
        "select.threshold=1.0",
        "select.capped=false",
    )
    res = runner.invoke(
        app,
        [
            "purify",
            "--model",
            str(trained),
            "--out",
            str(out),
            "--recipe",
            "paper",
            "--clean-size",
            "0.1",
            *_sets(*sets),
        ],
    )
    assert res.exit_code == 3, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["verdict"]["status"] == "failed" and rep["validation_drop"] > 0.02
    assert res.stdout.splitlines()[0].startswith("FAILED:") and "limit 2.0" in res.stdout.splitlines()[0]
    change = rep["validation_change"]  # the same drop, counted image by image on the validation part
    assert change["images"] == rep["validation_samples"] and change["drop"] == pytest.approx(rep["validation_drop"])
    assert change["lost"] - change["gained"] > 0 and change["changed"] >= change["lost"] + change["gained"]
    assert f"{change['changed']} of its {change['images']} predictions changed" in res.stdout.splitlines()[0]
    body = (out / "report.html").read_text().split("<body>", 1)[1]
    assert body.index("FAILED:") < body.index("<h2>")
    # the same with the cap on: the pruning stops where the validation accuracy would fall too far
    capped = tmp_path / "capped"
    assert _purify(trained, capped, "--recipe", "paper", sets=(*sets[:-1], "select.capped=true")) == 0
    rep = json.loads((capped / "report.json").read_text())
    assert "capped at" in rep["pruning_rule"] and rep["pruned_neurons"] < rep["total_neurons"]
    assert rep["validation_drop"] <= 0.02 and rep["curve_data"] == "validation"


def test_a_validation_part_too_small_for_the_limit_refuses_the_repair(trained: Path, tmp_path: Path) -> None:
    """29 validation images: one image is 3.4 points, more than the 2-point limit, so no step could be held to it.
    The model comes back unchanged with a failed verdict first (a backdoor suspected, not removed), exit 3."""
    out = tmp_path / "blind"
    sets = ("anp.iterations=10", "suspect.target=0", "eval_attack=badnets")  # no unguarded_repair
    res = runner.invoke(
        app, ["purify", "--model", str(trained), "--out", str(out), "--clean-size", "0.1", *_sets(*sets)]
    )
    assert res.exit_code == 3, res.output
    first = res.stdout.splitlines()[0]
    assert first.startswith("FAILED: class 0 suspected") and "29 images (one image is 3.4 points" in first
    assert "unguarded_repair: true" in first
    rep = json.loads((out / "report.json").read_text())
    assert rep["verdict"]["status"] == "failed" and rep["blind_guard_refused"] is True
    assert rep["steps"] == [] and rep["after"] == rep["before"]
    original, _ = load_model(trained)
    purified, _ = load_model(out / "purified.safetensors")
    assert all(
        torch.equal(a, b) for a, b in zip(original.state_dict().values(), purified.state_dict().values(), strict=True)
    )


def test_a_model_without_evidence_is_returned_unchanged(trained: Path, tmp_path: Path, monkeypatch) -> None:
    import pruneguard.workflows.purify as wp
    from pruneguard.scan.finder import SuspectFinding

    found = SuspectFinding(3, False, ["class 3 is no outlier"], {})
    monkeypatch.setattr(wp, "find_suspect", lambda *a, **k: found)
    out = tmp_path / "clean"
    assert _purify(trained, out) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["verdict"]["status"] == "unchanged" and rep["steps"] == [] and rep["after"] == rep["before"]
    assert rep["verdict"]["sentence"].startswith("No evidence of a backdoor (class 3 is no outlier)")
    original, _ = load_model(trained)
    purified, _ = load_model(out / "purified.safetensors")
    assert all(
        torch.equal(a, b) for a, b in zip(original.state_dict().values(), purified.state_dict().values(), strict=True)
    )
    # asked to purify anyway, the recipe runs towards the class found
    assert _purify(trained, tmp_path / "anyway", sets=(*FAST, "suspect.require_evidence=false")) == 0
    rep = json.loads((tmp_path / "anyway" / "report.json").read_text())
    assert rep["steps"][:2] == ["anp", "unlearn"] and rep["repair"]["target"] == 3 and rep["anp"]["target_class"] == 3


def test_unlearning_reports_each_stage_and_keeps_pruned_neurons(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "unlearn"
    sets = (
        *FAST,
        "suspect.require_evidence=false",
        "select.rule=count",
        "select.count=2",
        "select.capped=false",
        "max_acc_drop=null",
        "repair.rounds=2",
    )
    assert _purify(trained, out, sets=sets) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["scan"] is not None and rep["reversal_scan"] is not None and rep["vote"] is not None
    assert rep["repair"]["target"] == rep["suspect"]["target"] == rep["anp"]["target_class"]
    assert [(t["kind"], t["round"]) for t in rep["repair"]["triggers"]] == [
        ("patch", 1),
        ("blend", 1),
        ("patch", 2),
        ("blend", 2),
    ]
    assert set(rep["after_pruning"]) >= {"accuracy", "asr", "validation_accuracy"}
    assert rep["after_pruning"] != rep["after"]  # the unlearning changed the model
    assert "unlearning, 2 round(s)" in (out / "report.html").read_text()
    purified, _ = load_model(out / "purified.safetensors")
    zeroed = 0  # neurons whose scale (BatchNorm) or whole weight row (conv/linear without a norm) is zero
    for m in purified.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            zeroed += int((m.weight == 0).sum())
        elif isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            zeroed += int((m.weight.flatten(1).abs().sum(1) == 0).sum())
    assert zeroed >= 2  # the pruned neurons stayed zero through the unlearning fine-tune


def test_the_guard_scales_a_costly_repair_back(trained: Path, tmp_path: Path) -> None:
    """A repair that wrecks the model (a learning rate of 50) is scaled back until the validation accuracy fits; if
    nothing of it fits and nothing was pruned, the suspected backdoor was not removed: a failed verdict, exit 3."""
    out = tmp_path / "guard"
    sets = (
        *FAST,
        "suspect.target=0",
        "repair.method=finetune",
        "repair.lr=50",
        "repair.epochs=2",
        "min_suspect_kept=null",  # the accuracy alone: the class guard has its own test
    )
    code = _purify(trained, out, sets=sets)
    rep = json.loads((out / "report.json").read_text())
    guard = rep["guard"]
    assert guard["tried"][0]["scale"] == 1.0 and guard["tried"][0]["accuracy"] < guard["floor"]
    assert guard["scale"] < 1.0 and rep["validation_drop"] <= 0.02 + 1e-9
    assert [t["scale"] for t in guard["tried"]][1:] == [0.75, 0.5, 0.25, 0.0][: len(guard["tried"]) - 1]
    if guard["scale"] == 0 and rep["pruned_neurons"] == 0:
        assert code == 3 and rep["verdict"]["status"] == "failed" and "was undone" in rep["verdict"]["sentence"]
    else:
        assert code == 0 and "by the accuracy guard" in rep["verdict"]["sentence"]


def test_the_backoff_guard_lowers_the_learning_rate_and_runs_an_undone_round_again(
    trained: Path, tmp_path: Path
) -> None:
    """``repair.guard=backoff``: an undone round is run again at a third of the learning rate (at most ``retries``
    times in all), on the same triggers, and the later rounds keep that rate; only an undone round at the lowest
    rate ends the repair; the repair is not run again from the pruned model."""
    out, LR = tmp_path / "backoff", 1.0  # noqa: N806 (the rate the rounds start at; the first round breaks)
    sets = (
        *FAST,
        "suspect.target=0",
        "repair.guard=backoff",
        "repair.rounds=3",
        f"repair.lr={LR}",
        "repair.retries=2",
        "min_suspect_kept=null",
    )
    _purify(trained, out, sets=sets)
    rep = json.loads((out / "report.json").read_text())
    judged = rep["guard"]["rounds"]
    assert len(rep["repair"]["attempts"]) == 1 and rep["repair"]["lr"] == LR
    # a rate of 1 wrecks the first round: undone, it runs again at a third of the rate
    assert judged[0] == {**judged[0], "round": 1, "lr": LR, "scale": 0.0}
    lowest = LR / 9  # lowered twice at most (retries=2)
    for a, b in zip(judged, judged[1:], strict=False):
        if a["scale"] == 0 and a["lr"] > lowest * 1.01:  # undone above the lowest rate: lowered
            assert b["lr"] == pytest.approx(a["lr"] / 3)
        else:
            assert b["lr"] == pytest.approx(a["lr"])
        # an undone round runs again; any other goes on to the next round
        assert b["round"] == a["round"] + (a["scale"] > 0)
    assert judged[-1]["round"] == 3 or (judged[-1]["scale"] == 0 and judged[-1]["lr"] == pytest.approx(lowest))
    kept = {j["round"] for j in judged if j["scale"] > 0}
    assert kept and rep["guard"]["scale"] == min(j["scale"] for j in judged if j["scale"] > 0)
    # two triggers (patch, blend) a round, reversed once: the round run again reuses them
    assert [t["round"] for t in rep["repair"]["triggers"]] == [
        n for n in range(1, rep["repair"]["rounds"] + 1) for _ in "pb"
    ]
    assert rep["validation_drop"] <= 0.02 + 1e-9
    sentence = rep["verdict"]["sentence"]
    assert "round 1 at 1 undone" in sentence and "learning rate lowered to " in sentence
    assert f"unlearned {2 * len(kept)} reversed trigger(s)" in sentence


def test_the_round_guard_judges_each_unlearning_round_against_the_model_it_started_from(
    trained: Path, tmp_path: Path
) -> None:
    """``repair.guard=round``: each unlearning round that costs too much is scaled back towards the model the round
    started from, and an undone round ends the repair; the report keeps each round's judgement."""
    out = tmp_path / "rounds"
    sets = (
        *FAST,
        "suspect.target=0",
        "repair.guard=round",
        "repair.rounds=3",
        "repair.lr=50",
        "repair.retries=0",
    )
    code = _purify(trained, out, sets=sets)
    rep = json.loads((out / "report.json").read_text())
    rounds = rep["guard"]["rounds"]
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))
    for r in rounds:  # a learning rate of 50 wrecks every round: each is judged and scaled back
        assert r["tried"][0]["scale"] == 1.0 and r["tried"][0]["accuracy"] < rep["guard"]["floor"]
        assert [t["scale"] for t in r["tried"]][1:] == [0.75, 0.5, 0.25, 0.0][: len(r["tried"]) - 1]
    assert all(r["scale"] > 0 for r in rounds[:-1])  # only an undone round ends the repair
    assert len(rounds) == 3 or rounds[-1]["scale"] == 0
    assert rep["repair"]["rounds"] == len(rounds)
    assert sorted({t["round"] for t in rep["repair"]["triggers"]}) == [r["round"] for r in rounds]
    assert rep["validation_drop"] <= 0.02 + 1e-9
    if rounds[0]["scale"] == 0:
        assert rep["guard"]["scale"] == 0
    else:
        assert code == 0 and rep["guard"]["scale"] == min(r["scale"] for r in rounds if r["scale"] > 0)
        assert "by the accuracy " in rep["verdict"]["sentence"] and "round 1 " in rep["verdict"]["sentence"]
    assert "rounds kept at scales" in (out / "report.html").read_text()
    # the default recipe's class guard judged every point too: what share of the validation images the original
    # put in class 0 each point kept there
    assert rep["guard"]["min_suspect_kept"] == 0.6 and rep["guard"]["suspect_images"] > 0
    assert all(0.0 <= t["suspect_kept"] <= 1.0 for r in rounds for t in r["tried"])


def test_the_reference_model_judges_the_classes_the_voices_name(trained: Path, tmp_path: Path, monkeypatch) -> None:
    """The ``ratio`` rule, the voices forced apart (the digits toy's agree): the reference model judges the
    classes they name, and its choice drives targeted ANP and the unlearning."""
    import pruneguard.scan.finder as finder

    monkeypatch.setattr(finder, "vote_candidates", lambda s, kinds: [0, 5])
    out = tmp_path / "ref"
    assert _purify(trained, out, sets=(*FAST, "suspect.require_evidence=false", "suspect.evidence=ratio")) == 0
    rep = json.loads((out / "report.json").read_text())
    vote = rep["vote"]
    assert vote["decided_by"] == "reference" and vote["candidates"] == [0, 5]
    ref = vote["reference"]
    assert set(ref["sizes"]) == {"patch", "blend"} and all(set(d) == {"0", "5"} for d in ref["sizes"].values())
    for kind, sizes in ref["sizes"].items():  # the ratios are the suspect's scan sizes over the reference's
        for c, size in sizes.items():
            suspect = rep["reversal_scan"]["kinds"][kind]["mask_l1"][int(c)]
            assert ref["ratios"][kind][c] == pytest.approx(suspect / size)
    best = min((0, 5), key=lambda c: min(r[str(c)] for r in ref["ratios"].values()))
    assert rep["anp"]["target_class"] == vote["suspected_target"] == best == rep["repair"]["target"]
    assert ref["ratio_of_suspect"] == pytest.approx(min(r[str(best)] for r in ref["ratios"].values()))
    assert "reference model: class 0 ratio" in (out / "report.html").read_text()


def test_default_recipe_refuses_tabular_data(tmp_path: Path, capsys) -> None:
    out = tmp_path / "tab"
    assert main(["train", "--dataset", "breast_cancer", "--arch", "mlp", "--epochs", "1", "--out", str(out)]) == 0
    code, err = _run_bad(["purify", "--model", str(out / "model.safetensors"), "--out", str(tmp_path / "p")], capsys)
    assert code == 2 and "has no images" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p" / "report.json").exists()
    # the sensitivity scan reads tabular data: a recipe built on it runs
    sets = (
        "suspect.method=sensitivity",
        "suspect.require_evidence=false",
        "anp.targeted=true",
        "anp.iterations=5",
        "repair.method=finetune",
        "repair.epochs=1",
    )
    assert main(["purify", "--model", str(out / "model.safetensors"), "--out", str(tmp_path / "q"), *_sets(*sets)]) in (
        0,
        3,
    )
    assert json.loads((tmp_path / "q" / "report.json").read_text())["scan"] is not None


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
    # 0.76-0.91 and 0.98 on the machines it ran on (float kernels differ between CPUs); chance is 0.1
    assert result["test"]["asr"] > 0.6 and result["test"]["accuracy"] > 0.9
    purified = tmp_path / "purified"
    code = main(
        ["purify", "--model", str(out / "model.safetensors"), "--recipe", "paper", "--set", "anp.iterations=5"]
        + ["--set", "eval_attack=input_aware", "--out", str(purified)]
    )
    assert code == 0
    report = json.loads((purified / "report.json").read_text())
    assert report["before"]["asr"] == pytest.approx(result["test"]["asr"], abs=0.05)


def test_a_repair_that_nothing_of_fits_is_retried_at_a_third_of_the_learning_rate(
    trained: Path, tmp_path: Path
) -> None:
    """``repair.retries``: when not even a scaled-back repair fits the guard, the repair runs again from the pruned
    model at a third of the learning rate, until one fits (at some scale) or the retries are spent."""
    out = tmp_path / "retry"
    sets = (
        *FAST,
        "suspect.target=0",
        "repair.method=finetune",
        "repair.lr=50",
        "repair.epochs=2",
        "repair.retries=5",
    )
    _purify(trained, out, sets=sets)
    rep = json.loads((out / "report.json").read_text())
    attempts = rep["repair"]["attempts"]
    assert len(attempts) >= 2 and attempts[0]["lr"] == 50
    for a, b in zip(attempts, attempts[1:], strict=False):
        assert b["lr"] == pytest.approx(a["lr"] / 3)
    assert all(a["scale"] == 0 for a in attempts[:-1])  # it stopped at the first attempt that fits at all
    for a in attempts[:-1]:
        assert all(t["accuracy"] < rep["guard"]["floor"] for t in a["tried"][:-1])
    assert rep["guard"]["scale"] == attempts[-1]["scale"] and rep["repair"]["lr"] == attempts[-1]["lr"]
    assert attempts[-1]["scale"] > 0 or len(attempts) == 6
    if attempts[-1]["scale"] > 0:
        assert f"at a learning rate of {attempts[-1]['lr']:.3g}" in rep["verdict"]["sentence"]
    assert rep["steps"][1] == f"finetune (learning rate {rep['repair']['lr']:.3g})"


def test_max_kl_stops_the_pruning_where_the_outputs_diverge(trained: Path, tmp_path: Path) -> None:
    """``select.max_kl``: the pruning stops before the validation outputs diverge further from the original's,
    whatever the threshold and the accuracy guard would allow."""
    out = tmp_path / "kl"
    sets = (
        *FAST,
        "suspect.target=0",
        "select.threshold=0.9",
        "select.max_kl=0.01",
        "max_acc_drop=0.5",
        "repair.method=none",
    )
    assert _purify(trained, out, sets=sets) == 0
    rep = json.loads((out / "report.json").read_text())
    kls = {row["pruned"]: row["kl"] for row in rep["curve"]}
    assert kls[0] == 0.0 and all(v <= 0.01 + 1e-12 for k, v in kls.items() if k <= rep["pruned_neurons"])
    assert "(divergence from the original <= 0.01 nats)" in rep["pruning_rule"]  # threshold 0.9 prunes far more
    assert kls[min(k for k in kls if k > rep["pruned_neurons"])] > 0.01  # the next count went past the limit


def test_the_purified_model_is_rechecked_and_a_flag_is_a_caution_first(
    trained: Path, tmp_path: Path, monkeypatch
) -> None:
    """The finder's evidence tests run again on the purified model, on the validation part; a test that still
    flags it turns the verdict into a caution (exit 0), shown first on the page."""
    import pruneguard.workflows.purify as wp

    out = tmp_path / "rechecked"
    # the toy's measure lies near the shipped cut: a looser one makes sure it is flagged, which this test needs
    sets = (*FAST, "select.rule=count", "select.count=1", "select.capped=false", "select.max_kl=null",
            "repair.method=none", "suspect.relative_cut=0.5")  # fmt: skip
    assert _purify(trained, out, sets=sets) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["suspect"]["evidence"] and rep["pruned_neurons"] == 1
    recheck = rep["recheck"]
    assert recheck["target"] == rep["suspect"]["target"] and recheck["data"] == "validation"
    assert recheck["images"] == rep["validation_samples"] and set(recheck["tests"]) == {"sensitivity", "reference"}
    assert recheck["evidence"] == any(t["evidence"] for t in recheck["tests"].values())
    assert rep["verdict"]["sentence"].startswith("Purified, with a caution") == recheck["evidence"]
    # a test that still flags the purified model, whatever this toy's figures
    flagged = {**recheck, "judged": True, "evidence": True}
    flagged["tests"] = {**recheck["tests"], "reference": {**recheck["tests"]["reference"], "judged": True,
                                                          "evidence": True}}  # fmt: skip
    monkeypatch.setattr(wp, "recheck_suspect", lambda *a, **k: dict(flagged))
    code = _purify(trained, tmp_path / "flagged", sets=sets)
    rep = json.loads((tmp_path / "flagged" / "report.json").read_text())
    assert code == 0 and rep["verdict"]["status"] == "purified"
    assert rep["verdict"]["sentence"].startswith("Purified, with a caution:")
    body = (tmp_path / "flagged" / "report.html").read_text().split("<body>", 1)[1]
    assert body.index("the backdoor may still be there") < body.index("<h2>") and "still flags" in body


def _timeless(report: dict) -> dict:
    """A report without its clocks and the run's place (what two runs of the same job may differ in; the purified
    file's hash covers its metadata, which names the run's folder)."""
    drop = {"seconds", "started", "finished", "config", "purified_model", "purified_sha256"}
    if isinstance(report, dict):
        return {k: _timeless(v) for k, v in report.items() if k not in drop}
    if isinstance(report, list):
        return [_timeless(v) for v in report]
    return report


def test_a_resumed_purify_reads_its_finding_back_instead_of_scanning_again(
    trained: Path, tmp_path: Path, monkeypatch
) -> None:
    import pruneguard.workflows.purify as wp

    sets = (*FAST, "suspect.relative_cut=0.5")  # evidence: every step runs, the recheck with the vote's reference
    assert _purify(trained, tmp_path / "whole", sets=sets) == 0
    whole = json.loads((tmp_path / "whole" / "report.json").read_text())
    assert whole["vote"] is not None and "recheck" in whole

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the run stops after its suspect step

    monkeypatch.setattr(wp, "anp_optimize", killed)
    assert _purify(trained, tmp_path / "cut", sets=sets) == 130
    assert (tmp_path / "cut" / wp.SUSPECT_STATE).is_file() and not (tmp_path / "cut" / "report.json").exists()
    monkeypatch.undo()

    def no_scan(*args, **kwargs):
        raise AssertionError("the suspect step ran again")

    monkeypatch.setattr(wp, "find_suspect", no_scan)
    assert _purify(trained, tmp_path / "cut", "--resume", sets=sets) == 0
    resumed = json.loads((tmp_path / "cut" / "report.json").read_text())
    assert _timeless(resumed) == _timeless(whole)
    a, _ = load_model(tmp_path / "whole" / "purified.safetensors")
    b, _ = load_model(tmp_path / "cut" / "purified.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    # a finding made with other settings is not read back: the step runs again (here: the patched finder)
    assert _purify(trained, tmp_path / "cut", "--resume", sets=(*sets, "suspect.relative_cut=0.45")) == 1


def test_a_repair_that_fits_only_without_the_pruning_is_run_from_the_original(
    trained: Path, tmp_path: Path, monkeypatch
) -> None:
    """``repair.unpruned_fallback``: where nothing of the repair fits after the pruning, the repair runs again from
    the original model, and the report says the pruning was undone."""
    import pruneguard.workflows.purify as wp

    original, _ = load_model(trained)
    real = wp._repair
    seen: list[dict[str, torch.Tensor]] = []
    left: list[dict[str, torch.Tensor]] = []

    def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def repair(cfg, model, use, finding, limits):
        seen.append(state(model))
        record, attempts, lr = real(cfg, model, use, finding, limits)
        if len(seen) == 1:  # after the pruning: as if nothing fitted (the model back where the repair started)
            model.load_state_dict(seen[0])
            return record, [{**attempts[-1], "scale": 0.0}], lr
        left.append(state(model))
        return record, [{**attempts[-1], "scale": 1.0}], lr  # from the original: as if it fitted

    monkeypatch.setattr(wp, "_repair", repair)
    sets = (*FAST, "suspect.require_evidence=false", "select.rule=count", "select.count=2", "select.capped=false",
            "select.max_kl=null", "repair.unpruned_fallback=true")  # fmt: skip
    out = tmp_path / "fallback"
    assert _purify(trained, out, sets=sets) == 0
    rep = json.loads((out / "report.json").read_text())
    assert len(seen) == 2 and rep["pruning_undone"]["pruned"] == 2 and rep["pruned_neurons"] == 0
    first, second = seen
    assert any(not torch.equal(first[k], v) for k, v in original.state_dict().items())  # the pruned model
    assert all(torch.equal(second[k], v) for k, v in original.state_dict().items())  # the original
    assert any(s.startswith("pruning undone (2 neurons") for s in rep["steps"])
    assert "undid ANP's pruning of 2 of" in rep["verdict"]["sentence"]
    purified, _ = load_model(out / "purified.safetensors")
    assert all(torch.equal(purified.state_dict()[k], v) for k, v in left[0].items())  # the second repair's model
