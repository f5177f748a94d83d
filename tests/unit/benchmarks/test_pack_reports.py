"""benchmarks/pack_reports.py copies a split's default reports from the zoo cache, leaving out what no table reads."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def pack_reports(benchmark_module) -> ModuleType:
    return benchmark_module("pack_reports.py", "pack_reports_bench")


def _put(cache: Path, folder: str, report: dict) -> None:
    (cache / "defended" / folder).mkdir(parents=True)
    (cache / "defended" / folder / "report.json").write_text(json.dumps(report))


def test_the_split_s_default_reports_are_copied_lean_under_their_folder_names(pack_reports, tmp_path: Path) -> None:
    cache, out = tmp_path / "zoo", tmp_path / "reports"
    repair = {"lr": 0.01, "figures_png": "x"}
    full = {"verdict": {"status": "purified"}, "curve": [1, 2], "masks": [0.5], "repair": repair}
    _put(cache, "eval7-01-ab-default-0.01", full)
    _put(cache, "eval7-02-cd-paper-0.01", full)  # another defence
    _put(cache, "eval70-01-ef-default-0.01", full)  # another split
    _put(cache, "eval7-03-gh-default-0.001", full)  # another clean fraction
    assert pack_reports.main(["--split", "eval7", "--cache", str(cache), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["eval7-01-ab-default-0.01.json"]
    kept = json.loads((out / "eval7-01-ab-default-0.01.json").read_text())
    assert kept == {"verdict": {"status": "purified"}, "repair": {"lr": 0.01}}
    assert "curve" in full and "figures_png" in full["repair"]  # lean() copies, it does not modify
    assert pack_reports.pack(cache, "eval7", tmp_path / "r1000", "0.001") == ["eval7-03-gh-default-0.001"]


def test_a_folder_that_is_no_zoo_cache_is_refused(pack_reports, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        pack_reports.main(["--split", "eval7", "--cache", str(tmp_path), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "--cache=" in capsys.readouterr().err
