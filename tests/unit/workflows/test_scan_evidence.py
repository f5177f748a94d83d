"""``scan``'s evidence rows: the suspect finder's row flags what the finder flags, the corroborated band included."""

from __future__ import annotations

import pytest

from pruneguard.workflows.scan import _evidence, verdict_sentence


def _report(ratio: float, corroborated: bool) -> dict:
    return {
        "suspected_target": 7,
        "score": 0.57,
        "threshold": 0.41,
        "finder": {
            "suspected_target": 7,
            "ratio": ratio,
            "cut": 0.382,
            "corroborated": corroborated,
            "corroborated_cut": 0.558 if corroborated else None,
            "rule": "relative",
            "sensitivity_evidence": False,
        },
    }


def test_a_measure_in_the_corroborated_band_flags_against_the_bands_edge() -> None:
    report = _report(0.554, corroborated=True)
    rows = _evidence(report)
    finder = rows[-1]
    assert finder["flagged"] and finder["decides"] and finder["cut"] == 0.558
    assert "within the band" in finder["measure"] and finder["strength"] == pytest.approx(0.558 / 0.554)
    assert not rows[0]["decides"]  # the sensitivity scan alone is a voice in the default recipe
    sentence = verdict_sentence({**report, "evidence": rows})
    assert sentence.startswith("Suspicious: the reference model (purify's suspect finder) detector points at class 7")
    alone = _evidence(_report(0.554, corroborated=False))[-1]  # the same measure, the scan not agreeing
    assert not alone["flagged"] and alone["cut"] == 0.382 and "band" not in alone["measure"]
    assert _evidence(_report(0.30, corroborated=False))[-1]["flagged"]
