"""benchmarks/evidence_dev.py: which models a run takes (no model is trained here)."""

from __future__ import annotations

import argparse
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def evidence(benchmark_module) -> ModuleType:
    return benchmark_module("evidence_dev.py", "evidence_dev_bench")


def _args(split: str, models: str | None = None, skip: str = "") -> argparse.Namespace:
    return argparse.Namespace(split=split, models=models, skip_archs=skip)


def _error(message: str) -> None:
    raise SystemExit(message)


def test_models_are_taken_in_the_order_given_without_the_skipped_architectures(evidence: ModuleType) -> None:
    specs = evidence.zoo.zoo_specs("dev2")
    every = evidence.selected_specs(_args("dev2"), _error)
    assert every == specs
    kept = evidence.selected_specs(_args("dev2", skip="preact_resnet18"), _error)
    assert kept == [s for s in specs if s["arch"] != "preact_resnet18"] and len(kept) < len(specs)
    chosen = evidence.selected_specs(_args("dev2", "dev2-04,dev2-00,dev2-01,dev2-04", "preact_resnet18"), _error)
    assert [s["id"] for s in chosen] == ["dev2-04", "dev2-01"]  # dev2-00 is a PreAct-ResNet-18


@pytest.mark.parametrize(
    ("models", "skip", "named"),
    [("dev2-99", "", "--models='dev2-99'"), ("dev-01", "", "--models='dev-01'"), (None, "resnet", "--skip-archs")],
)
def test_an_unknown_id_or_architecture_is_refused_in_one_line(
    evidence: ModuleType, models: str | None, skip: str, named: str
) -> None:
    with pytest.raises(SystemExit, match=named):
        evidence.selected_specs(_args("dev2", models, skip), _error)


def test_the_evaluation_splits_need_allow_eval(evidence: ModuleType) -> None:
    with pytest.raises(SystemExit, match="--allow-eval"):
        evidence.main(["--split", "eval8"])
