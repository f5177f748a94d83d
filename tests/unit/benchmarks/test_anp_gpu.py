"""benchmarks/anp_gpu.py runs on any device: a CPU smoke run of its JSON (the GPU run is benchmarks/gpu_check.sh)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _module():
    spec = importlib.util.spec_from_file_location("anp_gpu", ROOT / "benchmarks" / "anp_gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["anp_gpu"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # a PreAct-ResNet-18: seconds on a quiet CPU
def test_a_cpu_smoke_run_reports_the_ratio_and_the_device() -> None:
    anp_gpu = _module()
    args = anp_gpu.build_parser().parse_args(
        ["--device", "cpu", "--iterations", "2", "--train-steps", "2", "--batch", "4", "--samples", "20"]
    )
    out = anp_gpu.run(args)
    assert out["device"] == "cpu" and out["iterations"] == 2 and out["amp"] is None
    assert out["anp_iter_s"] == pytest.approx(out["anp_seconds"] / 2)
    assert out["anp_iter_over_train_step"] == pytest.approx(out["anp_iter_s"] / out["train_step_s"])
    assert 0 < out["train_step_s"] and out["setup_seconds"] <= out["total_seconds"]


def test_bad_values_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    anp_gpu = _module()
    for argv in (["--iterations", "0"], ["--device", "tpu"]):
        with pytest.raises(SystemExit) as exc:
            anp_gpu.main(argv)
        assert exc.value.code == 2
    assert "--device='tpu'" in capsys.readouterr().err
