"""Property test of the CLI's promises over every command's options and hostile paths.

Hypothesis draws a command, a few of its options with random (often nonsensical) values and an ``--out`` from a
set of hostile paths (the current folder, its parent, a symlink, a dangling link, a path under a file, an input,
a folder the user made, a run pruneguard made), with or without ``--overwrite``/``--resume``. Promises checked on
every run: the exit code is 0, 1, 2 or 3; exit 2 prints exactly one ``error:`` line; nothing outside the output
folder changes (with exit 2, nothing at all); no input file changes.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tiny_models import digits_meta

from pruneguard.cli.app import main
from pruneguard.models.io import save_model
from pruneguard.utils.io import MARKER_NAME

# values for options that do not scale the work, and for those that do (a huge valid count would run for hours)
ANY = ["-1", "0", "1", "2", "0.5", "-0.5", "1e12", "inf", "-inf", "nan", "abc", "", "1e-30", "9" * 25]
WORK = ["-1", "0", "1", "2", "3", "1.5", "abc", "", "nan"]

BASE = {
    "attack": ["--model", "{model}", "--attack", "fgsm", "--n-samples", "20", "--batch-size", "20"],
    "scan": ["--model", "{model}", "--clean-samples", "40", "--eps", "0.2", "--steps", "1", "--restarts", "1",
             "--no-finder"],
    "purify": ["--model", "{model}", "--recipe", "paper", "--set", "anp.iterations=2", "--clean-size", "40"],
    "harden": ["--csv", "{csv}", "--label", "y", "--train-epochs", "1", "--n-eval", "20", "--square-queries", "0",
               "--pgd-steps", "1", "--finetune-epochs", "0", "--target-sparsity", "0.2", "--step", "0.2",
               "--clean-samples", "16"],
    "train": ["--dataset", "digits", "--epochs", "1", "--width", "0.25"],
    "demo": [],
}  # fmt: skip
PATHS = ["{model}", "{csv}", "{policy}", "{bomb}", "{inputs}", "{data}", "missing", "afile", ""]
OPTIONS: dict[str, dict[str, list[str]]] = {
    "attack": {
        "--eps": ANY, "--norm": ["linf", "l2", "l3", ""], "--n-samples": WORK, "--batch-size": WORK, "--seed": ANY,
        "--attack": ["fgsm", "pgd", "square", "badnets", "nope"], "--steps": WORK, "--dataset": ["digits", "x"],
        "--threads": ["1", "0", "-1", "x"], "--data-dir": PATHS, "--model": PATHS, "--step-size": ANY,
    },
    "scan": {
        "--eps": ["0.2", "0.1,0.3", "0", "-1", "2", "nan", "a,b", ""], "--steps": WORK, "--restarts": WORK,
        "--batch-size": WORK, "--threshold": ANY, "--clean-fraction": ANY, "--clean-samples": WORK, "--seed": ANY,
        "--policy": PATHS, "--model": PATHS,
    },
    "purify": {
        "--set": [f"anp.eps={v}" for v in ANY] + [f"anp.iterations={v}" for v in WORK]
        + [f"select.threshold={v}" for v in ("0.2", "-1", "2", "nan", "x")] + [f"anp.lr={v}" for v in ANY]
        + [f"suspect.target={v}" for v in ("3", "99", "-1", "x")] + [f"anp.batch_size={v}" for v in WORK]
        + ["arch_kwargs={}", "arch_kwargs=[]", "arch_kwargs={", "arch_kwargs={width: 1e12}", "nope=1", "anp"],
        "--recipe": ["paper", "default", "nope", ""], "--policy": PATHS, "--seed": ANY,
        "--clean-size": [*WORK, "40", "0.1", "1%", "inf"], "--model": PATHS, "--config": PATHS,
    },
    "harden": {
        "--eps": ANY, "--target-sparsity": ANY, "--step": ANY, "--max-acc-drop": ANY, "--test-fraction": ANY,
        "--feature-keep": ANY, "--label": ["y", "a", "nope", ""], "--policy": PATHS, "--norm": ["linf", "l2", "x"],
        "--seed": ANY, "--csv": PATHS, "--clean-samples": WORK, "--finetune-lr": ANY,
    },
    "train": {
        "--width": ANY, "--attack": ["badnets", "sig", "blend", "nope"], "--poison-rate": ANY, "--target-label": ANY,
        "--attack-params": ["{}", '{"delta": "x"}', '{"delta": NaN}', '{"patch_size": 1000000}', "[1]", "{"],
        "--holdout-fraction": ANY, "--lr": ANY, "--batch-size": WORK, "--arch": ["small_cnn", "os:system", "x:y", ""],
        "--data-dir": PATHS, "--seed": ANY, "--schedule": ["cosine", "x"],
    },
    "demo": {"--data-dir": ["missing", "afile", "{model}"], "--seed": ANY},
}  # fmt: skip
RESUMABLE = {"purify", "harden", "train"}
# --out values relative to the working folder; demo (minutes of training when it starts) only gets refused ones
OUTS = ["", ".", "./", "..", "{root}", "{inputs}", "{model}", "{data}/run", "{inputs}/run", "link_to_inputs",
        "dangling", "afile/run", "/proc/pruneguard-run", "userdir", "oldrun", "fresh/run", "fresh2"]  # fmt: skip
REFUSED_OUTS = ["", ".", "./", "..", "{root}", "{inputs}", "{model}", "link_to_inputs", "dangling", "afile/run",
                "/proc/pruneguard-run", "userdir"]  # fmt: skip


def _digest(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    if path.is_dir():
        return "dir"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path, skip: tuple[Path, ...] = (), made: frozenset[Path] = frozenset()) -> dict[str, str]:
    """Every path under ``root`` with its content hash (links by target), except what lies in ``skip`` and the
    folders in ``made`` (the parents created for a new ``--out``)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for name in dirnames + filenames:
            p = here / name
            if p in made or any(p == s or s in p.parents for s in skip):
                continue
            out[str(p.relative_to(root))] = _digest(p)
    return out


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("props")
    inputs, work = root / "inputs", root / "work"
    (inputs / "data").mkdir(parents=True)
    work.mkdir()
    meta = digits_meta()
    save_model(inputs / "model.safetensors", meta.build(seed=0), meta)
    g = torch.Generator().manual_seed(0)
    with open(inputs / "data.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "y"])
        for _ in range(60):
            x = torch.rand(3, generator=g).tolist()
            w.writerow([*x, int(x[0] + x[1] > 1)])
    (inputs / "policy.yaml").write_text("max_accuracy_drop: 0.5\n")
    bomb = ['a: &a ["x","x","x","x","x","x","x","x"]'] + [
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    (inputs / "bomb.yaml").write_text("\n".join(bomb) + "\nmax_scan_score: *i\n")
    (inputs / "data" / "notes.txt").write_text("the user's data")
    (work / "src.py").write_text("print('the user's project')")
    (work / "afile").write_text("a file")
    (work / "userdir").mkdir()
    (work / "userdir" / "thesis.tex").write_text("years of work")
    (work / "oldrun").mkdir()
    (work / "oldrun" / MARKER_NAME).write_text("made by pruneguard")
    (work / "oldrun" / "result.json").write_text("{}")
    (work / "link_to_inputs").symlink_to(inputs)
    (work / "dangling").symlink_to(root / "nowhere")
    return {"root": root, "inputs": inputs, "work": work}


def _fill(text: str, names: dict[str, str]) -> str:
    for key, value in names.items():
        text = text.replace("{" + key + "}", value)
    return text


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@st.composite
def invocations(draw: st.DrawFn) -> tuple[str, list[str], str]:
    command = draw(st.sampled_from(sorted(BASE)))
    args = list(BASE[command])
    options = OPTIONS[command]
    for name in draw(st.lists(st.sampled_from(sorted(options)), max_size=2, unique=True)):
        value = draw(st.sampled_from(options[name]))
        if name in args:
            args[args.index(name) + 1] = value
        else:
            args += [name, value]
    hostile = draw(st.booleans()) or command == "demo"  # half the runs get an --out that can hold a run
    out = draw(st.sampled_from(REFUSED_OUTS if command == "demo" else OUTS if hostile else OUTS[-3:]))
    if draw(st.booleans()):
        args.append("--overwrite")
    if command in RESUMABLE and draw(st.integers(0, 4)) == 0:
        args.append("--resume")
    return command, args, out


@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(inv=invocations())
def test_cli_keeps_its_promises(sandbox: dict[str, Path], inv: tuple[str, list[str], str]) -> None:
    command, args, out = inv
    root, inputs, work = sandbox["root"], sandbox["inputs"], sandbox["work"]
    names = {
        "root": str(root),
        "inputs": str(inputs),
        "data": str(inputs / "data"),
        "model": str(inputs / "model.safetensors"),
        "csv": str(inputs / "data.csv"),
        "policy": str(inputs / "policy.yaml"),
        "bomb": str(inputs / "bomb.yaml"),
    }
    args, out = [_fill(a, names) for a in args], _fill(out, names)
    input_files = [Path(names[k]) for k in ("model", "csv", "policy", "bomb")]
    data_dir = inputs / "data"
    data_is_input = str(data_dir) in args  # otherwise it is just a folder an --out may be put in
    inputs_before = [_digest(p) for p in input_files], snapshot(data_dir) if data_is_input else None
    out_path = Path(os.path.abspath(work / out)) if out else work
    skip = (out_path, out_path.parent / f".{out_path.name}.pruneguard-previous")
    made = frozenset(p for p in out_path.parents if not p.exists() and not p.is_symlink())
    before_all, before_rest = snapshot(root), snapshot(root, skip, made)
    err = io.StringIO()
    with _cwd(work), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([command, *args, "--out", out])
    message = err.getvalue()
    event(f"{command}: exit {code}")  # pytest --hypothesis-show-statistics shows the mix of outcomes
    assert code in (0, 1, 2, 3), (command, args, out, code, message)
    if code == 2:
        assert message.startswith("error: ") and message.count("\n") == 1, (command, args, out, message)
        assert snapshot(root) == before_all, (command, args, out, message)
    inputs_after = [_digest(p) for p in input_files], snapshot(data_dir) if data_is_input else None
    assert inputs_after == inputs_before, (command, args, out)
    assert snapshot(root, skip, made) == before_rest, (command, args, out, code, message)
