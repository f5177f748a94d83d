"""benchmarks/recheck.py: the table that sets the purify recheck beside the ASR the zoo measured."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bench(benchmark_module) -> ModuleType:
    return benchmark_module("recheck.py", "recheck_bench")


def _row(model: str, asr_after: float, *, backdoored: bool = True, sens: bool = False, ref: bool = False,
         judged: bool = True) -> dict[str, Any]:  # fmt: skip
    tests = {
        "sensitivity": {"original": {"score": 0.6}, "repaired": {"score": 0.5 if sens else 0.2}, "judged": judged,
                        "evidence": sens},
        "reference": {"original": 0.1, "repaired": 0.2 if ref else 0.8, "judged": judged, "evidence": ref},
    }  # fmt: skip
    return {
        "model": model,
        "arch": "small_cnn",
        "trigger": "badnets",
        "backdoored": backdoored,
        "target_label": 1,
        "suspect": 1,
        "asr_before": 0.99,
        "asr_after": asr_after,
        "verdict": "purified",
        "recheck": {"evidence": sens or ref, "judged": judged, "tests": tests},
    }


def test_models_are_grouped_by_the_asr_the_recheck_never_saw(bench: ModuleType) -> None:
    rows = [
        _row("m0", 0.0),
        _row("m1", 0.02, ref=True),
        _row("m2", 0.05, sens=True),
        _row("m3", 0.9, sens=True, ref=True),
        _row("m4", 0.6, judged=False),
        _row("c0", 0.01, backdoored=False, ref=True),
        {**_row("m5", 0.9), "recheck": None},  # not rechecked: in no group
    ]
    groups = {g["group"]: g for g in bench.summary(rows)}
    assert [g["ids"] for g in groups.values()] == [["m0", "m1"], ["m2"], ["m3", "m4"], ["c0"]]
    assert groups["ASR after <= 2%"]["flagged"] == 1 and groups["ASR after <= 2%"]["flagged_by"]["reference"] == 1
    assert groups["ASR after > 20%"]["flagged"] == 1 and groups["ASR after > 20%"]["judged"] == 1
    assert groups["clean models"]["flagged"] == 1
    md = bench.markdown({"summary": bench.summary(rows), "rows": rows, "missing": ["m9"]})
    assert "| ASR after > 20% | 2 | 1 (1 / 1) | 1 | m3, m4 |" in md
    assert "| m4 | small_cnn | badnets | 1 / 1 | 99.0 → 60.0 | 0.60 → 0.20 | 0.10 → 0.80 | not judged |" in md
    assert "Not rechecked (no evidence, or nothing changed): m5 (purified)." in md and "kept: m9." in md
