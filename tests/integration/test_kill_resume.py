"""A purify run killed with SIGKILL at a random point, then resumed, ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pruneguard.cli.app import main


def _args(iterations: int) -> list[str]:
    """ANP as published (no scans: the kill lands in ANP), short, checkpointed often."""
    sets = [f"anp.iterations={iterations}", "checkpoint_every=10"]
    return ["--recipe", "paper", "--clean-size", "0.1", "--seed", "3", *[x for s in sets for x in ("--set", s)]]


ARGS = _args(400)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kr") / "m"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--attack",
                "badnets",
                "--poison-rate",
                "0.1",
                "--epochs",
                "1",
                "--width",
                "0.25",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out / "model.safetensors"


def _cmd(model: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pruneguard.cli.app",
        "purify",
        "--model",
        str(model),
        "--out",
        str(out),
        *ARGS,
        *extra,
    ]


def test_sigkill_then_resume_is_bit_identical(model_file: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    assert main(["purify", "--model", str(model_file), "--out", str(ref), *ARGS]) == 0
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cmd(model_file, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    delay = random.Random().uniform(2.0, 7.0)  # import time is ~2 s; ANP runs a few seconds after that
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    state = killed / "anp_state.pt"
    done_before_kill = int(torch.load(state, weights_only=True)["iteration"]) if state.is_file() else 0
    assert main(["purify", "--model", str(model_file), "--out", str(killed), *ARGS, "--resume"]) == 0
    a = json.loads((ref / "report.json").read_text())
    b = json.loads((killed / "report.json").read_text())
    assert a["masks"] == b["masks"], f"masks differ after a kill at iteration {done_before_kill}"
    assert a["curve"] == b["curve"] and a["after"] == b["after"] and a["pruned_neurons"] == b["pruned_neurons"]
    wa, wb = load_file(str(ref / "purified.safetensors")), load_file(str(killed / "purified.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["purified_weights_sha256"] == b["purified_weights_sha256"]


def test_same_seed_same_report_figures(model_file: Path, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        assert main(["purify", "--model", str(model_file), "--out", str(tmp_path / name), *_args(30)]) == 0
        runs.append(json.loads((tmp_path / name / "report.json").read_text()))
    for key in ("masks", "curve", "before", "after", "pruned_neurons", "clean_indices_hash", "purified_weights_sha256"):
        assert runs[0][key] == runs[1][key], key
