"""--device: the CPU gives today's default results; a device this machine lacks, or no device at all, is refused
with one line naming the option (exit 2) before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import digits_meta
from typer.testing import CliRunner

from pruneguard.cli.app import app, main
from pruneguard.models.io import save_model

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    meta = digits_meta()
    path = tmp_path_factory.mktemp("m") / "model.safetensors"
    save_model(path, meta.build(seed=0), meta)
    return path


def _purify(model: Path, out: Path, *extra: str) -> dict:
    args = ["purify", "--model", str(model), "--out", str(out), "--recipe", "paper", "--set", "anp.iterations=3",
            "--clean-size", "60", "--json", *extra]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return dict(json.loads(res.stdout))


def test_purify_on_the_cpu_gives_the_default_weights(model_file: Path, tmp_path: Path) -> None:
    default = _purify(model_file, tmp_path / "a")
    cpu = _purify(model_file, tmp_path / "b", "--device", "cpu", "--set", "threads=1")
    assert cpu["purified_weights_sha256"] == default["purified_weights_sha256"]
    assert cpu["device"] == "cpu" and cpu["config"]["device"] == "cpu" and default["config"]["device"] == "auto"


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("purify", []),
        ("scan", []),
        ("attack", ["--attack", "fgsm"]),
        ("harden", []),
        ("export", []),
        ("train", []),
    ],
)
@pytest.mark.parametrize("device", ["tpu", "cuda:x", "cuda", ""])
def test_a_device_this_machine_lacks_is_refused_in_one_line(
    command: str, extra: list[str], device: str, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / ("run.onnx" if command == "export" else "run")
    given = ["--dataset", "digits"] if command == "train" else ["--model", str(model_file)]
    code = main([command, *given, *extra, "--out", str(out), "--device", device])
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert f"--device={device!r}" in lines[0] and ("accepted" in lines[0]), lines[0]
    assert not out.exists()


def test_threads_is_a_run_config_field_of_purify(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["purify", "--model", str(model_file), "--out", str(tmp_path / "r"), "--threads", "2"]) == 2
    assert "--threads" in capsys.readouterr().err
    assert main(["purify", "--model", str(model_file), "--out", str(tmp_path / "r"), "--set", "threads=0"]) == 2
    assert "threads=0" in capsys.readouterr().err and not (tmp_path / "r").exists()
