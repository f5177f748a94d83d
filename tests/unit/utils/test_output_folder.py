"""The output folder contract: pruneguard only replaces folders it made, never follows links, never loses a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.utils.io import MARKER_NAME, output_folder


def _fill(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else p.read_text() if p.is_file() else "<dir>")
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("out", ["", ".", "./", "sub/..", "/"])
def test_current_folder_and_its_parents_are_refused(in_tmp: Path, out: str) -> None:
    _fill(in_tmp, {"precious.txt": "x"})
    before = _snapshot(in_tmp)
    with pytest.raises(ConfigError, match="--out"), output_folder(Path(out), overwrite=True):
        pass
    assert _snapshot(in_tmp) == before


def test_parent_of_the_current_folder_is_refused(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(in_tmp / "a" / "b")
    with pytest.raises(ConfigError, match="parents"), output_folder(Path(".."), overwrite=True):
        pass


def test_symlink_out_to_a_full_folder_is_refused_and_its_target_kept(in_tmp: Path) -> None:
    target = in_tmp / "target"
    _fill(target, {"a.txt": "1", MARKER_NAME: "x"})
    (in_tmp / "link").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"), output_folder(in_tmp / "link", overwrite=True):
        pass
    assert (target / "a.txt").read_text() == "1"


def test_dangling_symlink_out_is_one_configerror(in_tmp: Path) -> None:
    (in_tmp / "dangling").symlink_to(in_tmp / "nowhere")
    with pytest.raises(ConfigError, match="--out=.*symbolic link"), output_folder(in_tmp / "dangling", overwrite=False):
        pass


def test_unmarked_full_folder_is_never_cleared(in_tmp: Path) -> None:
    _fill(in_tmp / "mine", {"thesis.tex": "years of work"})
    with pytest.raises(ConfigError, match="not created by pruneguard"), output_folder(in_tmp / "mine", overwrite=True):
        pass
    assert (in_tmp / "mine" / "thesis.tex").read_text() == "years of work"


def test_symlink_inside_a_replaced_run_is_unlinked_not_followed(in_tmp: Path) -> None:
    outside = in_tmp / "outside"
    _fill(outside, {"keep.txt": "k"})
    out = in_tmp / "run"
    with output_folder(out, overwrite=False):
        (out / "old.txt").write_text("old")
    (out / "link_dir").symlink_to(outside)
    (out / "link_file").symlink_to(outside / "keep.txt")
    with output_folder(out, overwrite=True) as folder:
        (folder / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME, "new.txt"]
    assert _snapshot(outside) == {"keep.txt": "k"}
    assert not any(p.name.endswith("pruneguard-previous") for p in in_tmp.iterdir())


def test_inputs_inside_out_are_refused(in_tmp: Path) -> None:
    out = in_tmp / "run"
    with output_folder(out, overwrite=False):
        _fill(out / "data", {"train.csv": "a,b"})
        (out / "policy.yaml").write_text("max_scan_score: 1")
    for inp in (out / "data", out / "policy.yaml", out / "data" / "train.csv"):
        with pytest.raises(ConfigError, match="input"), output_folder(out, overwrite=True, inputs=(inp,)):
            pass
    assert (out / "policy.yaml").is_file() and (out / "data" / "train.csv").is_file()


def test_out_inside_an_input_folder_is_refused(in_tmp: Path) -> None:
    _fill(in_tmp / "data", {"x.csv": "1"})
    with (
        pytest.raises(ConfigError, match="input"),
        output_folder(in_tmp / "data" / "run", overwrite=False, inputs=(in_tmp / "data",)),
    ):
        pass
    assert not (in_tmp / "data" / "run").exists()


@pytest.mark.parametrize("make", ["file_parent", "proc"])
def test_uncreatable_out_names_out(in_tmp: Path, make: str) -> None:
    if make == "file_parent":
        (in_tmp / "afile").write_text("x")
        out = in_tmp / "afile" / "run"
    else:
        out = Path("/proc/pruneguard-run")
    with pytest.raises(ConfigError, match="^--out=.*cannot be created"), output_folder(out, overwrite=False):
        pass


def test_failed_overwrite_keeps_the_old_run(in_tmp: Path) -> None:
    out = in_tmp / "run"
    with output_folder(out, overwrite=False):
        (out / "report.json").write_text("old")
    with pytest.raises(RuntimeError), output_folder(out, overwrite=True) as folder:
        (folder / "report.json").write_text("half")
        raise RuntimeError("the job failed")
    assert (out / "report.json").read_text() == "old"
    assert sorted(p.name for p in in_tmp.iterdir()) == ["run"]


def test_killed_overwrite_keeps_the_old_run_until_a_later_run_finishes(in_tmp: Path) -> None:
    out = in_tmp / "run"
    with output_folder(out, overwrite=False):
        (out / "report.json").write_text("old")
    pid = os.fork()
    if pid == 0:  # the child is killed inside the block: no cleanup code runs
        with output_folder(out, overwrite=True) as folder:
            (folder / "state.pt").write_text("iteration 5")
            os._exit(0)
    os.waitpid(pid, 0)
    previous = in_tmp / ".run.pruneguard-previous"
    assert (previous / "report.json").read_text() == "old"
    with output_folder(out, overwrite=False, resume=True) as folder:  # --resume continues the unfinished run
        assert (folder / "state.pt").read_text() == "iteration 5"
        (folder / "report.json").write_text("new")
    assert (out / "report.json").read_text() == "new" and not previous.exists()


def test_existing_run_without_flags_is_refused(in_tmp: Path) -> None:
    out = in_tmp / "run"
    with output_folder(out, overwrite=False):
        (out / "a").write_text("1")
    with pytest.raises(ConfigError, match="--overwrite"), output_folder(out, overwrite=False):
        pass


def test_bad_input_in_a_fresh_folder_leaves_nothing(in_tmp: Path) -> None:
    out = in_tmp / "new" / "run"
    with pytest.raises(IncompatibleModelError), output_folder(out, overwrite=False) as folder:
        (folder / "dense.safetensors").write_text("x")
        raise IncompatibleModelError("bad model")
    assert not (in_tmp / "new").exists()


def test_runtime_failure_in_a_fresh_folder_keeps_resumable_state(in_tmp: Path) -> None:
    out = in_tmp / "run"
    with pytest.raises(KeyboardInterrupt), output_folder(out, overwrite=False) as folder:
        (folder / "anp_state.pt").write_text("s")
        raise KeyboardInterrupt
    assert (out / "anp_state.pt").is_file()


def test_resume_only_continues_a_run_pruneguard_made(in_tmp: Path) -> None:
    _fill(in_tmp / "mine", {"result.json": "the user's own file"})
    with (
        pytest.raises(ConfigError, match="no run to resume"),
        output_folder(in_tmp / "mine", overwrite=False, resume=True),
    ):
        pass
    assert _snapshot(in_tmp / "mine") == {"result.json": "the user's own file"}


def test_bad_input_on_resume_leaves_the_runs_marker_as_it_was(in_tmp: Path) -> None:
    """A resumed run's marker (written by another version, say) is not rewritten: exit 2 changes nothing there."""
    _fill(in_tmp / "run", {MARKER_NAME: "made by an older pruneguard", "result.json": "{}"})
    with pytest.raises(ConfigError), output_folder(in_tmp / "run", overwrite=False, resume=True):
        raise ConfigError("bad --model")
    assert _snapshot(in_tmp / "run") == {MARKER_NAME: "made by an older pruneguard", "result.json": "{}"}
