"""benchmarks/anp_table.py keeps each defence's row in the cache, keyed by everything the row depends on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def anp_table(benchmark_module) -> ModuleType:
    return benchmark_module("anp_table.py", "anp_table")


def test_rows_are_reused_only_for_the_same_options(anp_table: ModuleType, tmp_path: Path, monkeypatch) -> None:
    calls: list[tuple[str, float]] = []

    def fake(defense: str, model_path: Path, attack: str, seed: int, fraction: float, args: Any) -> dict:
        calls.append((defense, fraction))
        return {"accuracy": 0.5 + len(calls) / 100, "asr": 0.1, "seconds": 1.0}

    monkeypatch.setattr(anp_table, "run_defense", fake)
    model = tmp_path / "blend-s0-abc" / "model.safetensors"
    args = anp_table.build_parser().parse_args(["--cache", str(tmp_path / "cache")])
    first = anp_table.cached_defense("anp", model, "blend", 0, 0.01, args)
    assert anp_table.cached_defense("anp", model, "blend", 0, 0.01, args) == first and len(calls) == 1
    anp_table.cached_defense("anp", model, "blend", 0, 0.01, args)  # the same key
    anp_table.cached_defense("anp", model, "blend", 0, 0.001, args)  # another clean fraction
    args.anp_iterations = 2  # an option the paper recipe depends on
    changed = anp_table.cached_defense("anp", model, "blend", 0, 0.01, args)
    assert len(calls) == 3 and changed != first
    args.fresh_rows = True
    anp_table.cached_defense("anp", model, "blend", 0, 0.01, args)
    assert len(calls) == 4
    args.fresh_rows = False
    # the default recipe's key is its full config: --anp-iterations (the paper's) does not enter it, --quick does
    anp_table.cached_defense("default", model, "blend", 0, 0.01, args)
    args.anp_iterations = 3
    anp_table.cached_defense("default", model, "blend", 0, 0.01, args)
    assert len(calls) == 5
    args.quick = True
    anp_table.cached_defense("default", model, "blend", 0, 0.01, args)
    assert len(calls) == 6
    # a baseline's key holds its epochs, not any recipe
    anp_table.cached_defense("ft", model, "blend", 0, 0.01, args)
    args.ft_epochs = 3
    anp_table.cached_defense("ft", model, "blend", 0, 0.01, args)
    anp_table.cached_defense("default", model, "blend", 0, 0.01, args)
    assert len(calls) == 8


def test_recipe_defences_run_the_shipped_recipes(anp_table: ModuleType) -> None:
    from pruneguard.recipes import get_recipe

    args = anp_table.build_parser().parse_args([])
    assert anp_table.defense_recipe("default", args) == get_recipe("default").to_dict()
    assert anp_table.defense_recipe("anp", args) == get_recipe("paper").to_dict()
    ft = anp_table.defense_recipe("anp_ft", args)
    assert ft["repair"]["method"] == "finetune" and ft["repair"]["epochs"] == args.ft_epochs
    assert set(anp_table.all_defenses()) >= {"none", "ft", "fine_pruning", "nad", "anp", "paper", "default"}


def test_attack_params_enter_the_model_key_only_when_set(anp_table: ModuleType, tmp_path: Path, monkeypatch) -> None:
    made: list[Path] = []

    def fake_train(run: Any) -> tuple[dict, None]:
        made.append(run.out)
        assert run.attack_params == ({"delta": 0.2} if "delta" in str(run.attack_params) else {})
        return {"test": {"accuracy": 0.9}}, None

    monkeypatch.setattr(anp_table, "train_job", fake_train)
    base = {"cache": str(tmp_path), "dataset": "fashion_mnist", "data_dir": None, "arch": "small_cnn", "width": 1.0,
            "clean_label_rate": 0.8, "poison_rate": 0.05, "target_label": 0, "epochs": 1}  # fmt: skip
    ns = anp_table.main.__globals__["argparse"].Namespace
    plain = anp_table.trained_model("sig", 0, ns(attack_params="{}", **base))
    other = anp_table.trained_model("blend", 0, ns(attack_params='{"sig": {"delta": 0.2}}', **base))
    strong = anp_table.trained_model("sig", 0, ns(attack_params='{"sig": {"delta": 0.2}}', **base))
    assert plain.parent != strong.parent and len(made) == 3
    # the blend model's key ignores sig's parameters: same folder as with no parameters at all
    assert other.parent == anp_table.trained_model("blend", 0, ns(attack_params="{}", **base)).parent


def test_defences_on_anp_masks_are_charged_anp_time(anp_table: ModuleType) -> None:
    rows = [
        {"attack": "blend", "seed": 0, "clean_fraction": 0.01, "defense": "anp", "seconds": 300.0},
        {"attack": "blend", "seed": 0, "clean_fraction": 0.01, "defense": "anp_ft", "seconds": 20.0},
        {"attack": "blend", "seed": 0, "clean_fraction": 0.001, "defense": "anp", "seconds": 100.0},
        {"attack": "sig", "seed": 0, "clean_fraction": 0.01, "defense": "default", "seconds": 310.0},
        {"attack": "sig", "seed": 0, "clean_fraction": 0.01, "defense": "nad", "seconds": 12.0},
    ]
    assert [anp_table.charged_seconds(r, rows) for r in rows] == [300.0, 320.0, 100.0, 310.0, 12.0]


def test_a_recipe_revision_gives_the_attack_a_new_model_key(anp_table: ModuleType, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(anp_table, "train_job", lambda run: ({"test": {"accuracy": 0.9}}, None))
    base = {"cache": str(tmp_path), "dataset": "fashion_mnist", "data_dir": None, "arch": "small_cnn", "width": 1.0,
            "clean_label_rate": 0.8, "poison_rate": 0.05, "target_label": 0, "epochs": 1}  # fmt: skip
    args = anp_table.main.__globals__["argparse"].Namespace(attack_params="{}", **base)
    revised = anp_table.trained_model("input_aware", 0, args)
    monkeypatch.setattr(anp_table, "ATTACK_REVISIONS", {})
    assert anp_table.trained_model("input_aware", 0, args).parent != revised.parent


def test_markdown_compares_each_defence_with_the_clean_models_asr(anp_table: ModuleType) -> None:
    def row(attack: str, defense: str, asr: float) -> dict:
        return {"attack": attack, "defense": defense, "clean_fraction": 0.01, "seed": 0, "accuracy": 0.9, "asr": asr,
                "seconds": 1.0}  # fmt: skip

    rows = [row("badnets", "none", 0.99), row("sig", "none", 0.85), row("badnets", "anp", 0.008),
            row("sig", "anp", 0.012)]  # fmt: skip
    args = anp_table.build_parser().parse_args([])  # the defaults: small_cnn, 4 epochs, rate 0.05, target 0
    text = anp_table.markdown(rows, {0: 0.91}, args, {("badnets", 0): 0.0066, ("sig", 0): 0.0041})
    assert "| badnets | 90.00 / 99.00 | 90% | 1.00 | yes | 0.66 |" in text
    assert "| sig | 90.00 / 85.00 | 80% | 1.00 | yes | 0.41 |" in text
    # badnets 0.8% is at or under 1% but above the clean model's 0.66%; sig is above both
    assert "| anp | 0.00 | 1.00 | 1/2 | 0/2 | 1 |" in text
    floors = {("badnets", 0): 0.01, ("sig", 0): 0.02}
    assert "| anp | 0.00 | 1.00 | 1/2 | 2/2 | 1 |" in anp_table.markdown(rows, {0: 0.91}, args, floors)


def _table(cache: Path, *extra: str) -> dict:
    """``anp_table.py --quick`` on digits (small_cnn width 0.25), badnets and blend, no defence and anp."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "anp_table.py"), "--quick", "--dataset", "digits",
           "--width", "0.25", "--clean-fraction", "0.1", "--small-fraction", "0", "--attacks", "badnets,blend",
           "--defenses", "none,anp", "--json", "--cache", str(cache), *extra]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)  # a hang guard
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout))


def _figures(table: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in table["rows"]]


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one local Ray at a time: each takes every core
def test_ray_executor_gives_the_local_rows_and_a_rerun_computes_nothing(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    one = ("--attacks", "blend")
    local = _table(tmp_path / "local", *one)
    assert local["computed"] == {"units": 3, "reused": 0}  # one model, two rows
    # a local Ray started by the script, stopped at its end
    on_ray = _table(tmp_path / "ray", *one, "--executor", "ray")
    assert _figures(on_ray) == _figures(local) and on_ray["computed"] == local["computed"]
    again = _table(tmp_path / "ray", *one)  # the cache Ray filled serves the local executor: nothing recomputed
    assert again["computed"] == {"units": 0, "reused": 3} and again["rows"] == on_ray["rows"]
