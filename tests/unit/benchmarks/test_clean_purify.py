"""benchmarks/clean_purify.py: the clean models by name, and a name it does not know."""

from __future__ import annotations

from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def cp(benchmark_module) -> ModuleType:
    return benchmark_module("clean_purify.py", "clean_purify_bench")


def test_fourteen_clean_models_by_name(cp: ModuleType) -> None:
    names = cp.model_names()
    assert len(names) == len(set(names)) == 14
    assert names[5] == "digits-gap_cnn-w0.5-s5" and names[-1] == "fashion_mnist-small_cnn-w1.0-s1"


def test_an_unknown_model_exits_2_naming_it(cp: ModuleType, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cp.main(["--models", "digits-gap_cnn-w0.5-s5,nope"])
    assert exc.value.code == 2
    assert "--models: 'nope' is not accepted; accepted: digits-small_cnn-w0.5-s0" in capsys.readouterr().err


def test_each_recipe_runs_in_a_folder_of_its_own_and_its_row_is_kept(cp: ModuleType, tmp_path, monkeypatch) -> None:
    import argparse

    outs: list = []

    def fake_purify(cfg, resume):
        outs.append(cfg.out)
        accuracy = {"accuracy": 0.9}
        vote = {"kind": "warp", "reference": {"measure": 0.5}}
        suspect = {"target": 3, "evidence": False, "reasons": ["none"]}
        verdict = {"status": "unchanged", "sentence": "No evidence."}
        report = {"before": accuracy, "after": accuracy, "verdict": verdict, "suspect": suspect, "vote": vote}
        return {**report, "pruned_neurons": 0, "seconds": 1.0, "git_commit": "x"}, None, None

    monkeypatch.setattr(cp, "purify", fake_purify)
    model = tmp_path / "zoo" / "m1" / "model.safetensors"
    entry = {"name": "digits-small_cnn-w0.5-s0", "model": model, "size": {"clean_samples": 140}}
    rows = []
    for recipe in ("default", "paper", "default"):
        args = argparse.Namespace(cache=str(tmp_path / "cache"), recipe=recipe, cached_only=False)
        rows.append(cp.run_one(entry, args))
    assert len(outs) == 2 and outs[0] != outs[1]  # the third run read the first's row back
    assert all(o.parent == tmp_path / "cache" / "runs" and o.name.startswith(entry["name"]) for o in outs)
    assert rows[0] == rows[2] and (rows[0]["kind"], rows[0]["measure"]) == ("warp", 0.5)
    assert (rows[0]["recipe"], rows[1]["recipe"]) == ("default", "paper")
