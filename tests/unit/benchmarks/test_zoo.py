"""benchmarks/zoo.py: deterministic specs from disjoint seeds, rows cached by everything they depend on, and the
quick zoo end to end (an interrupted run resumes; a rerun recomputes nothing)."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from pruneguard.attacks import ATTACKS
from pruneguard.config import TrainRunConfig
from pruneguard.models import create_model

ROOT = Path(__file__).resolve().parents[3]

EVAL_SEEDED = ["eval", "eval2", "eval3", "eval4", "eval5", "eval6", "eval7", "eval8"]  # drawn like an evaluation split


@pytest.fixture(scope="module")
def zoo(benchmark_module) -> ModuleType:
    return benchmark_module("zoo.py", "zoo_bench")


def test_specs_are_deterministic_and_the_splits_disjoint(zoo: ModuleType) -> None:
    for quick in (False, True):
        dev, ev = zoo.zoo_specs("dev", quick=quick), zoo.zoo_specs("eval", quick=quick)
        assert zoo.zoo_specs("eval", quick=quick) == ev and zoo.zoo_specs("dev", quick=quick) == dev
        assert not {s["seed"] for s in dev} & {s["seed"] for s in ev}
        assert len({s["id"] for s in dev + ev}) == len(dev) + len(ev)
    full = zoo.zoo_specs("eval")
    assert len(full) >= 24 and {s["dataset"] for s in full} == {"fashion_mnist"}
    assert {s["dataset"] for s in zoo.zoo_specs("eval", quick=True)} == {"digits"}
    # each split's seeds stay below the next split's, whatever its size up to the span
    starts = sorted(zoo.SPLIT_SEEDS.values())
    assert all(a + zoo.SEED_SPAN <= b for a, b in zip(starts, starts[1:], strict=False))
    fresh = zoo.zoo_specs("eval2")
    assert len(fresh) == len(full) and not {s["seed"] for s in fresh} & {s["seed"] for s in full}
    assert [s["id"] for s in fresh][:2] == ["eval2-00", "eval2-01"] and fresh != full
    # every split, development or evaluation, draws from seeds no other split uses
    seeds = [{s["seed"] for s in zoo.zoo_specs(split)} for split in zoo.SPLIT_SEEDS]
    assert sum(map(len, seeds)) == len(set().union(*seeds))
    assert set(zoo.EVAL_SPLITS) == {"eval", "eval2", "eval8"}
    # the calibration split is clean models only, every architecture twice
    calib = zoo.zoo_specs("dev3")
    assert not any(s["backdoored"] for s in calib)
    assert collections.Counter(s["arch"] for s in calib) == {a: 2 for a in zoo.MODES["full"]["archs"]}


@pytest.mark.parametrize("split", EVAL_SEEDED)
def test_eval_split_covers_architectures_triggers_rates_and_clean_models(zoo: ModuleType, split: str) -> None:
    specs = zoo.zoo_specs(split)
    clean = [s for s in specs if not s["backdoored"]]
    assert 4 * len(clean) >= len(specs)
    assert {s["arch"] for s in specs} == {"small_cnn", "gap_cnn", "preact_resnet18", "vgg11_bn", "plain_cnn", "gn_cnn"}
    families = collections.Counter(s["trigger"] for s in specs if s["backdoored"])
    paper = {"badnets", "blend", "input_aware", "label_consistent", "sig", "trojan", "wanet"}
    assert set(families) == paper | {"random_patch", "thin_line", "faint_pattern"}
    assert all(0.01 <= s["poison_rate"] <= 0.10 for s in specs if s["backdoored"])
    assert all(s["poison_rate"] == 0.0 for s in clean)
    assert len({s["target_label"] for s in specs}) >= 5  # drawn per model, not fixed
    # placements and shapes are drawn per model: two models of a family differ
    for family in ("random_patch", "thin_line", "faint_pattern"):
        params = [json.dumps(s["params"], sort_keys=True) for s in specs if s["trigger"] == family]
        assert len(set(params)) == len(params)


@pytest.mark.parametrize("split", ["dev", "dev2", "dev3", *EVAL_SEEDED])
def test_every_spec_builds_its_attack_its_model_and_its_training_config(zoo: ModuleType, split: str) -> None:
    for quick, shape in ((False, (1, 28, 28)), (True, (1, 8, 8))):
        for s in zoo.zoo_specs(split, quick=quick):
            attack = ATTACKS.create(s["trigger"], target_label=s["target_label"], **s["params"])
            if s["trigger"] in zoo._STATELESS:  # the drawn placement fits the dataset's images
                x = torch.rand(2, *shape)
                out = attack(None, x, x)
                assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
            TrainRunConfig(out=Path("unused"), dataset=s["dataset"], arch=s["arch"], width=s["width"],
                           attack=s["trigger"], attack_params=s["params"], target_label=s["target_label"])  # fmt: skip
            if s["backdoored"]:
                assert 0.0 < s["attack_rate"] <= 1.0
    model = create_model("gn_cnn", num_classes=10, input_shape=(1, 8, 8), width=0.5)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_rows_are_reused_only_for_the_same_dependencies(zoo: ModuleType, tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []

    def fake(spec: dict, defense: str, model_path: Path, args: Any, table_args: Any) -> dict:
        calls.append(defense)
        if defense == "nad":
            raise RuntimeError("no layer to distil")
        return {"accuracy": 0.9, "asr": 0.01 * len(calls), "seconds": 1.0}

    monkeypatch.setattr(zoo, "run_defense", fake)
    args = zoo.parse_args(["--split", "eval", "--quick", "--cache", str(tmp_path)])
    spec = zoo.zoo_specs("eval", quick=True)[1]
    model = tmp_path / "models" / "eval-01-abc" / "model.safetensors"
    table = zoo.table_namespace(spec, args)
    first = zoo.cached_row(spec, "paper", model, args, table)
    assert zoo.cached_row(spec, "paper", model, args, table) == first and calls == ["paper"]
    args.sets = [*args.sets, "anp.iterations=7"]  # a recipe setting enters the key
    zoo.cached_row(spec, "paper", model, args, table)
    args.clean_fraction = 0.05  # so does the clean data
    zoo.cached_row(spec, "paper", model, args, table)
    other = {**spec, "params": {**spec["params"], "seed": 1}}  # and the trigger the ASR is measured with
    zoo.cached_row(other, "paper", model, args, table)
    assert calls == ["paper"] * 4
    failed = zoo.cached_row(spec, "nad", model, args, table)  # a failure is a row, kept like the others
    assert failed["error"].startswith("RuntimeError") and zoo.cached_row(spec, "nad", model, args, table) == failed
    assert calls.count("nad") == 1
    args.retry_failed = True
    zoo.cached_row(spec, "nad", model, args, table)
    assert calls.count("nad") == 2


def test_summary_figures(zoo: ModuleType) -> None:
    def row(backdoored: bool, before: float, after: float, asr: float, defense: str = "default") -> dict:
        return {"model": {"backdoored": backdoored}, "defense": defense, "accuracy_before": before,
                "accuracy_after": after, "asr_before": 0.9, "asr_after": asr, "seconds": 2.0}  # fmt: skip

    rows = [row(True, 0.9, 0.88, 0.005), row(True, 0.9, 0.9, 0.015), row(True, 0.8, 0.81, 0.5),
            row(False, 0.9, 0.895, 0.0), {**row(True, 0.9, 0.9, 0.0), "error": "x"}]  # fmt: skip
    s = zoo.summary(rows)["default"]
    assert (s["models"], s["failed"], s["backdoored"], s["clean"]) == (4, 1, 3, 1)
    assert s["asr_le_1pct"] == pytest.approx(1 / 3) and s["asr_le_2pct"] == pytest.approx(2 / 3)
    assert s["mean_acc_drop_backdoored"] == pytest.approx((2.0 + 0.0 - 1.0) / 3)
    assert s["worst_acc_drop_backdoored"] == pytest.approx(2.0)
    assert s["mean_acc_drop_clean"] == pytest.approx(0.5) and s["mean_seconds"] == 2.0
    assert s["mean_asr_before_backdoored"] == pytest.approx(90.0)
    assert s["mean_asr_backdoored"] == pytest.approx((0.5 + 1.5 + 50.0) / 3)
    rows[1]["asr_before"] = 0.2  # an attack that did not take: out of the *_effective figures
    s = zoo.summary(rows)["default"]
    assert s["backdoored_effective"] == 2 and s["asr_le_1pct_effective"] == pytest.approx(0.5)
    assert "| default | 4 (3 + 1) | 1/3 | 2/3 | 1/2 |" in zoo.markdown(
        {"summary": zoo.summary(rows), "by_arch": {}, "by_trigger": {}}
    )
    for r, arch in zip(rows, ["a", "b", "a", "b", "a"], strict=True):
        r["model"]["arch"] = arch
    by_arch = zoo.summary_by(rows, "arch")["default"]
    assert (by_arch["a"]["backdoored"], by_arch["a"]["failed"], by_arch["b"]["clean"]) == (2, 1, 1)
    assert by_arch["a"]["asr_le_1pct"] == pytest.approx(0.5)


def test_common_rows_keep_the_models_every_defence_ran_on(zoo: ModuleType) -> None:
    def row(mid: str, defense: str, **kw: Any) -> dict:
        return {"model": {"id": mid}, "defense": defense, **kw}

    rows = [row("a", "x"), row("a", "y"), row("b", "x"), row("b", "y", error="e"), row("c", "x")]
    assert zoo.common_rows(rows) == rows[:2]


def test_kept_rows_join_only_on_the_same_trained_models(zoo: ModuleType, tmp_path: Path) -> None:
    def row(mid: str, defense: str, before: float = 0.9) -> dict:
        return {"model": {"id": mid}, "defense": defense, "clean_fraction": 0.01, "accuracy_before": before,
                "asr_before": 0.5, "accuracy_after": 0.8, "asr_after": 0.01, "seconds": 1.0}  # fmt: skip

    args = zoo.parse_args(["--split", "eval2", "--defenses", "none,ft"])
    here = [row("eval2-00", "ft"), row("eval2-01", "ft")]
    kept = {"rows": [row("eval2-00", "default"), row("eval2-00", "ft"), row("eval2-05", "default"),
                     {**row("eval2-01", "default"), "clean_fraction": 0.001}],
            "recipes": {"default": {"name": "default"}}, "git_commit": "abc"}  # fmt: skip
    added, source = zoo.kept_rows(tmp_path / "k.json", kept, here, args)
    assert added == [kept["rows"][0]]  # not ft (run here), not a model without a row here, not another fraction
    assert source == {"file": str(tmp_path / "k.json"), "git_commit": "abc", "rows": 1,
                      "recipes": {"default": {"name": "default"}}}  # fmt: skip
    assert args.missing == ["eval2-05 default (in k.json; no row of the model in this run)"]
    kept["rows"][0]["accuracy_before"] = 0.91  # another trained model
    with pytest.raises(zoo.ConfigError, match="eval2-00 has accuracy/ASR 0.91/0.5 before any defence there"):
        zoo.kept_rows(tmp_path / "k.json", kept, here, args)


def test_joined_rows_take_the_models_not_run_here_whole_of_one_recipe_version(zoo: ModuleType, tmp_path) -> None:
    def row(mid: str, defense: str, fraction: float = 0.01) -> dict:
        return {"model": {"id": mid}, "defense": defense, "clean_fraction": fraction, "accuracy_before": 0.9}

    args = zoo.parse_args(["--split", "eval5", "--defenses", "none,default"])
    here = [row("eval5-00", "none"), row("eval5-00", "default")]
    kept = {"rows": [row("eval5-00", "default"), row("eval5-03", "none"), row("eval5-03", "default"),
                     row("eval5-03", "ft"), row("eval5-04", "default", 0.001)],
            "recipes": {"default": {"name": "default", "anp": {"iterations": 300}}}, "git_commit": "abc"}  # fmt: skip
    recipes = {"default": {"name": "default", "anp": {"iterations": 300}}}
    added, source = zoo.joined_rows(tmp_path / "k.json", kept, here, recipes, args)
    assert added == kept["rows"][1:4]  # eval5-00 keeps this run's figures; another clean fraction is left out
    assert source == {"file": str(tmp_path / "k.json"), "git_commit": "abc", "models": ["eval5-03"], "rows": 3}
    recipes["default"]["anp"]["iterations"] = 2000  # another recipe version
    with pytest.raises(zoo.ConfigError, match="its recipe 'default' differs from this run's"):
        zoo.joined_rows(tmp_path / "k.json", kept, here, recipes, args)


def test_the_default_report_is_read_from_the_cache_or_a_joined_folder(zoo: ModuleType, tmp_path: Path) -> None:
    spec = zoo.zoo_specs("eval5")[3]
    reports = tmp_path / "reports"
    reports.mkdir()
    args = zoo.parse_args(["--split", "eval5", "--cache", str(tmp_path / "cache"), "--join-reports", str(reports)])
    assert zoo.default_report(spec, args) is None
    folder = f"{zoo.train_unit(spec, args).name}-default-0.01"
    (reports / f"{folder}.json").write_text("{}")
    assert zoo.default_report(spec, args) == reports / f"{folder}.json"
    in_cache = tmp_path / "cache" / "defended" / folder / "report.json"
    in_cache.parent.mkdir(parents=True)
    in_cache.write_text("{}")
    assert zoo.default_report(spec, args) == in_cache  # this run's own report first


def test_a_run_with_overrides_keeps_its_purify_output_apart(zoo: ModuleType, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    spec = zoo.zoo_specs("eval5")[3]
    plain = zoo.parse_args(["--split", "eval5", "--cache", cache])
    changed = zoo.parse_args(["--split", "eval5", "--cache", cache, "--set", "validation_fraction=0.4"])
    other = zoo.parse_args(["--split", "eval5", "--cache", cache, "--set", "validation_fraction=0.3"])
    model = zoo.train_unit(spec, plain).name
    names = {zoo.defended_name(model, "default", a) for a in (plain, changed, other)}
    assert len(names) == 3 and f"{model}-default-0.01" in names
    assert zoo.defended_name(model, "default", changed) == zoo.defended_name(model, "default", changed)
    kept = tmp_path / "cache" / "defended" / f"{model}-default-0.01" / "report.json"
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")
    assert zoo.default_report(spec, plain) == kept
    assert zoo.default_report(spec, changed) is None  # the named recipe's report is not the overridden run's
    quick = zoo.parse_args(["--split", "eval5", "--quick", "--cache", cache])
    assert quick.sets and not quick.user_sets  # the quick mode's own settings do not rename its folders


def test_with_rows_must_be_a_results_file_of_the_split(zoo: ModuleType, tmp_path: Path, capsys) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema": "pruneguard.zoo/1", "split": "dev", "rows": []}))
    assert zoo.parse_args(["--split", "dev", "--with-rows", str(path)]).with_rows_data[0]["split"] == "dev"
    for content in ('{"schema": "pruneguard.zoo/1", "split": "eval"}', "[1]", "not json"):
        path.write_text(content)
        for option in ("--with-rows", "--join"):
            with pytest.raises(SystemExit) as exc:
                zoo.parse_args(["--split", "dev", option, str(path)])
            assert exc.value.code == 2 and f"{option}={path} is not accepted" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        zoo.parse_args(["--split", "dev", "--join-reports", str(tmp_path / "none")])
    assert exc.value.code == 2 and "--join-reports=" in capsys.readouterr().err
    path.write_text(json.dumps({"schema": "pruneguard.zoo/1", "split": "dev", "rows": []}))
    with pytest.raises(SystemExit) as exc:  # a results file read is never the one written
        zoo.parse_args(["--split", "dev", "--join", str(path), "--out-json", str(path)])
    assert exc.value.code == 2 and f"--out-json={path} is not accepted: it is an input" in capsys.readouterr().err


def test_detections_read_the_default_reports_cuts(zoo: ModuleType) -> None:
    report = {
        "scan": {"score": 0.3, "suspected_target": 4, "threshold": 0.41},
        "reversal_scan": {"anomaly_index": 2.5, "suspected_target": 7},
        "vote": {"reference": {"ratio_of_suspect": 0.2, "cut": 0.41}},
        "suspect": {"target": 7, "evidence": True},
    }
    found = zoo._detections(report)
    assert found["sensitivity"] == (0.3, 4, False) and found["neural_cleanse"] == (2.5, 7, True)
    assert found["default"] == (pytest.approx(0.41 / 0.2), 7, True)  # flagged by the ratio: score above 1
    report["vote"] = {}
    assert found["default"][0] > 1 >= zoo._detections(report)["default"][0]
    # a class named with suspect.target: no scan ran, so no detector has a figure (not a crash of the summary)
    named = {"scan": None, "reversal_scan": None, "vote": None, "suspect": {"target": 8, "evidence": True}}
    assert zoo._detections(named) == {}


def test_the_default_detectors_score_is_the_statistic_its_recipe_decides_with(zoo: ModuleType) -> None:
    # a scan far above its cut, a reference measure above the rule's cut: not flagged where the scan is no evidence
    report = {
        "scan": {"score": 0.82, "suspected_target": 4, "threshold": 0.41},
        "reversal_scan": {"anomaly_index": 1.2, "suspected_target": 4},
        "vote": {"reference": {"measure": 0.6, "cut": 0.436}},
        "suspect": {"target": 4, "evidence": False},
        "config": {"recipe": {"suspect": {"sensitivity_evidence": False}}},
    }
    assert zoo._detections(report)["default"] == (pytest.approx(0.436 / 0.6), 4, False)
    report["config"]["recipe"]["suspect"]["sensitivity_evidence"] = True  # the scan decides too: its score counts
    assert zoo._detections(report)["default"][0] == pytest.approx(2.0)
    # flagged in the band above the cut where the scan names the same class: scored against the band's edge
    report["config"]["recipe"]["suspect"]["sensitivity_evidence"] = False
    report["vote"] = {"corroborated": True, "reference": {"measure": 0.55, "cut": 0.382, "corroborated_cut": 0.558}}
    report["suspect"]["evidence"] = True
    assert zoo._detections(report)["default"] == (pytest.approx(0.558 / 0.55), 4, True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--defenses", "none,nope"], "--defenses='none,nope' is not accepted"),
        (["--clean-fraction", "0"], "--clean-fraction=0.0 is not accepted"),
        (["--set", "anp.nope=1"], "is not accepted"),
        (["--part", "2/2"], "--part='2/2' is not accepted"),
        (["--models", "eval-00,dev-01"], "--models='eval-00,dev-01' is not accepted"),
    ],
)
def test_bad_options_exit_2_with_one_line(zoo: ModuleType, argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        zoo.parse_args(["--split", "eval", "--quick", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_recipe_settings_are_chosen_on_the_dev_split_only(zoo: ModuleType, capsys) -> None:
    assert zoo.parse_args(["--split", "dev", "--set", "anp.iterations=500"]).sets == ["anp.iterations=500"]
    with pytest.raises(SystemExit) as exc:
        zoo.parse_args(["--split", "eval", "--set", "anp.iterations=500"])
    assert exc.value.code == 2 and "not accepted with --split eval" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        zoo.parse_args(["--split", "eval2", "--set", "anp.iterations=500"])
    assert "not accepted with --split eval2" in capsys.readouterr().err
    assert zoo.parse_args(["--split", "eval", "--clean-fraction", "0.001"]).clean_fraction == 0.001  # 60 images


def _run(cache: Path, *extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out = cache / "out.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "zoo.py"), "--split", "eval", "--quick", "--cache", str(cache),
           "--out-json", str(out), *extra]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)  # a hang guard only
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(out.read_text()))


@pytest.mark.slow
def test_quick_zoo_runs_end_to_end_and_resumes_without_recomputing(tmp_path: Path) -> None:
    partial = _run(tmp_path, "--defenses", "none,paper")  # an interrupted run: the default recipe not reached
    assert partial["computed"] == {"models": 4, "rows": 8}
    full = _run(tmp_path, "--defenses", "none,paper,default,ft_sam,sau,i_bau,nad")
    assert full["computed"] == {"models": 0, "rows": 20}  # only the rows of the defences not run before
    assert not [(r["model"]["id"], r["defense"], r["error"]) for r in full["rows"] if "error" in r]
    again = _run(tmp_path, "--defenses", "none,paper,default,ft_sam,sau,i_bau,nad")
    assert again["computed"] == {"models": 0, "rows": 0}
    kept = _run(tmp_path, "--defenses", "none,default,ft", "--cached-only")  # reads, computes nothing
    assert kept["computed"] == {"models": 0, "rows": 0} and len(kept["missing"]) == 4
    assert {r["defense"] for r in kept["rows"]} == set(kept["summary"]) == {"none", "default"}
    assert again["rows"] == full["rows"] and again["summary"] == full["summary"]
    (tmp_path / "full.json").write_text(json.dumps(full))  # a committed results file of an earlier run
    merged = _run(tmp_path, "--defenses", "none,nad", "--cached-only", "--with-rows", str(tmp_path / "full.json"))
    assert {r["defense"] for r in merged["rows"]} == set(merged["summary"]) == set(full["summary"])
    assert sorted(merged["rows"], key=json.dumps) == sorted(full["rows"], key=json.dumps)
    assert merged["summary"] == full["summary"] and merged["with_rows"][0]["rows"] == len(full["rows"]) - 8
    # a split run in two parts: the first two models here, the other two joined whole from the earlier file
    ids = sorted({r["model"]["id"] for r in full["rows"]})
    parts = _run(tmp_path, "--defenses", "none,default", "--cached-only", "--models", ",".join(ids[:2]),
                 "--join", str(tmp_path / "full.json"))  # fmt: skip
    assert parts["joined"][0]["models"] == ids[2:] and parts["missing"] == []
    assert {k: parts["summary"][k] for k in ("none", "default")} == {k: full["summary"][k] for k in ("none", "default")}
    assert parts["scan"] == full["scan"]  # every model's default report, the joined ones' included
    assert [r for r in full["rows"] if r["defense"] == "paper"] == [
        r for r in partial["rows"] if r["defense"] == "paper"
    ]
    assert set(full["summary"]) == {"none", "paper", "default", "ft_sam", "sau", "i_bau", "nad"}
    for figures in full["summary"].values():
        assert (
            figures["models"] + figures["failed"] == 4 and figures["backdoored"] + figures["clean"] == figures["models"]
        )
    for r in full["rows"]:
        assert {"model", "defense", "accuracy_before", "asr_before", "accuracy_after", "asr_after", "seconds"} <= set(r)
        assert 0.0 <= r["asr_before"] <= 1.0 and r["model"]["dataset"] == "digits"
        if r["defense"] in ("paper", "default"):  # the recipes report a verdict
            assert r["verdict"] in ("purified", "unchanged", "failed")
    assert {r["model"]["trigger"] for r in full["rows"] if r["model"]["backdoored"]} == {"random_patch", "thin_line",
                                                                                        "faint_pattern"}  # fmt: skip


def test_pack_copies_one_splits_trained_models_without_checkpoints_and_its_rows(zoo: ModuleType, tmp_path) -> None:
    cache = tmp_path / "cache"
    files = {
        "models/eval2-01-aa/model.safetensors": "m",
        "models/eval2-01-aa/result.json": "{}",
        "models/eval2-01-aa/trigger_net.safetensors": "g",
        "models/eval2-01-aa/checkpoint.pt": "resumable, large",
        "models/eval2-02-bb/checkpoint.pt": "still training",
        "models/eval-01-cc/model.safetensors": "another split",
        "rows/eval2-01-aa-default-0.01-k.json": "{}",
        "rows/eval-01-cc-default-0.01-k.json": "{}",
    }
    for rel, text in files.items():
        (cache / rel).parent.mkdir(parents=True, exist_ok=True)
        (cache / rel).write_text(text)
    dest = tmp_path / "carry-eval2"
    counts = zoo.pack_cache(cache, "eval2", dest)
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == [
        "models/eval2-01-aa/model.safetensors",
        "models/eval2-01-aa/result.json",
        "models/eval2-01-aa/trigger_net.safetensors",
        "rows/eval2-01-aa-default-0.01-k.json",
    ]
    assert counts == {"models": 1, "rows": 1, "bytes": len("m") + len("{}") + len("g") + len("{}")}
    assert not (tmp_path / "carry-eval2.partial").exists()
    with pytest.raises(zoo.ConfigError, match="exists"):
        zoo.pack_cache(cache, "eval2", dest)
    assert (cache / "models/eval2-01-aa/checkpoint.pt").read_text() == "resumable, large"  # the cache is untouched


def test_pack_refuses_an_existing_folder_with_one_line(zoo: ModuleType, tmp_path, capsys) -> None:
    dest = tmp_path / "carry"
    dest.mkdir()
    with pytest.raises(SystemExit) as exc:
        zoo.parse_args(["--split", "eval2", "--pack", str(dest)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"--pack={dest} exists" in err and "Traceback" not in err
