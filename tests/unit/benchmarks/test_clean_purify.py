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
