"""The CLI never deletes what pruneguard did not create: hostile ``--out`` values and ``--overwrite``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from tiny_models import digits_meta

from pruneguard.cli.app import main
from pruneguard.models.io import save_model
from pruneguard.utils.io import MARKER_NAME

FAST_ATTACK = ["--attack", "fgsm", "--n-samples", "20", "--batch-size", "20"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    meta = digits_meta()
    path = tmp_path_factory.mktemp("outf") / "model.safetensors"
    save_model(path, meta.build(), meta)
    return path


def run_cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue()


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() if p.is_file() else "<dir>" for p in sorted(root.rglob("*"))}


def assert_refused(args: list[str], needle: str = "--out") -> str:
    code, err = run_cli(args)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    return err


def test_empty_out_never_clears_the_current_folder(model_file: Path, tmp_path: Path, monkeypatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "src.py").write_text("print('years of work')")
    monkeypatch.chdir(project)
    before = snapshot(project)
    for out in ("", ".", str(project), str(tmp_path)):
        assert_refused(["attack", "--model", str(model_file), *FAST_ATTACK, "--out", out, "--overwrite"])
    assert snapshot(project) == before


def test_symlink_out_to_a_full_folder_keeps_the_target(model_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "notes.txt").write_text("keep")
    (tmp_path / "link").symlink_to(target)
    assert_refused(["attack", "--model", str(model_file), *FAST_ATTACK, "--out", str(tmp_path / "link"), "--overwrite"])
    assert (target / "notes.txt").read_text() == "keep"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert_refused(["attack", "--model", str(model_file), *FAST_ATTACK, "--out", str(tmp_path / "dangling")])


def test_overwrite_unlinks_symlinks_inside_and_replaces_only_its_own_run(model_file: Path, tmp_path: Path) -> None:
    out, outside = tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("keep")
    args = ["attack", "--model", str(model_file), *FAST_ATTACK, "--out", str(out)]
    assert run_cli(args)[0] == 0 and (out / MARKER_NAME).is_file()
    (out / "to_dir").symlink_to(outside)
    (out / "to_file").symlink_to(outside / "data.txt")
    assert run_cli([*args, "--overwrite"])[0] == 0
    assert (outside / "data.txt").read_text() == "keep"
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER_NAME, "config.yaml", "report.html", "result.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "run"]


def test_overwrite_refuses_a_folder_pruneguard_did_not_make(model_file: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    assert_refused(["attack", "--model", str(model_file), *FAST_ATTACK, "--out", str(mine), "--overwrite"])
    assert snapshot(mine) == {"thesis.tex": "x"}


def test_inputs_inside_out_are_refused(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(["attack", "--model", str(model_file), *FAST_ATTACK, "--out", str(out)])[0] == 0
    (out / "policy.yaml").write_text("max_accuracy_drop: 0.5\n")
    (out / "data").mkdir()
    before = snapshot(out)
    purify = ["purify", "--model", str(model_file), "--recipe", "paper", "--set", "anp.iterations=2"]
    purify += ["--out", str(out), "--overwrite"]
    assert_refused([*purify, "--policy", str(out / "policy.yaml")])
    train = ["train", "--dataset", "digits", "--epochs", "1", "--out", str(out), "--overwrite"]
    assert_refused([*train, "--data-dir", str(out / "data")])
    attack = ["attack", "--model", str(model_file), *FAST_ATTACK, "--out", str(out), "--overwrite"]
    assert_refused([*attack, "--data-dir", str(out / "data")])
    assert snapshot(out) == before


def test_out_that_cannot_be_created_names_out(model_file: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "run", Path("/proc/pruneguard-run")):
        assert_refused(["attack", "--model", str(model_file), *FAST_ATTACK, "--out", str(out)])


def test_a_failed_overwrite_keeps_the_old_run(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["attack", "--model", str(model_file), *FAST_ATTACK, "--out", str(out)]
    assert run_cli(args)[0] == 0
    before = snapshot(out)
    # refused inside the job (the model does not fit the dataset), after the folder was set aside
    assert_refused([*args, "--overwrite", "--dataset", "breast_cancer"], needle="error")
    assert snapshot(out) == before and json.loads((out / "result.json").read_text())["n_samples"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
