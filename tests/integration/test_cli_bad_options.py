"""Options that used to crash or be ignored: each is exit 2 with one line naming what was wrong, nothing written."""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace
from pathlib import Path

import pytest
from tiny_models import digits_meta

from pruneguard.cli.app import main
from pruneguard.models.io import save_model

TRAIN = ["train", "--dataset", "digits", "--epochs", "1", "--width", "0.25"]


def run_cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue()


def assert_refused(args: list[str], out: Path, *needles: str) -> None:
    code, err = run_cli([*args, "--out", str(out)])
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert all(n in err for n in needles), err
    assert not out.exists()


@pytest.mark.parametrize("width", ["inf", "1e12", "nan", "0"])
def test_train_width_out_of_range(tmp_path: Path, width: str) -> None:
    assert_refused([*TRAIN, "--width", width], tmp_path / "o", "--width")


@pytest.mark.parametrize("params", ['{"delta": "x"}', '{"delta": NaN}', '{"delta": [1]}', '{"frequency": Infinity}'])
def test_train_attack_params_wrong_type_or_nan(tmp_path: Path, params: str) -> None:
    assert_refused([*TRAIN, "--attack", "sig", "--attack-params", params], tmp_path / "o", "--attack-params")


def test_train_badnets_huge_patch(tmp_path: Path) -> None:
    assert_refused([*TRAIN, "--attack", "badnets", "--attack-params", '{"patch_size": 1000000}'], tmp_path / "o")


@pytest.mark.parametrize("arch", ["os:system", "os:getcwd", "json:dumps"])
def test_train_arch_that_is_not_a_model_factory(tmp_path: Path, arch: str) -> None:
    assert_refused([*TRAIN, "--arch", arch], tmp_path / "o", "arch")


@pytest.mark.parametrize("command", [TRAIN, ["demo"]])
def test_data_dir_missing_or_a_file(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "afile").write_text("x")
    for data_dir in (tmp_path / "missing", tmp_path / "afile"):
        assert_refused([*command, "--data-dir", str(data_dir)], tmp_path / "o", "--data-dir")


def test_attack_settings_from_model_metadata_are_validated(tmp_path: Path) -> None:
    meta = digits_meta()
    purify = [
        "purify",
        "--recipe",
        "paper",
        "--set",
        "anp.iterations=2",
        "--clean-size",
        "40",
        "--set",
        "eval_attack=badnets",
    ]
    for params in ({"patch_size": 1000000}, {"patch_size": "x"}, {"no_such_param": 1}):
        model = tmp_path / "m.safetensors"
        recorded = replace(meta, extra={"attack": {"name": "badnets", "params": params}})
        save_model(model, recorded.build(seed=0), recorded)
        assert_refused([*purify, "--model", str(model)], tmp_path / "o", "model file")
