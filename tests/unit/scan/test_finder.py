"""``pruneguard.scan.finder``: the evidence rules of the suspect finder, on hand-made sizes and on the
backdoored digits toy of tests/unit/conftest (target class 0)."""

from __future__ import annotations

import math

import pytest

from pruneguard.errors import ConfigError
from pruneguard.scan.finder import find_suspect, relative_evidence
from pruneguard.scan.reversal import reversal_scan, scan_config


def test_relative_evidence_forgives_a_model_easier_to_trigger_everywhere() -> None:
    reference = {"patch": [100.0] * 5, "blend": [50.0] * 5}
    brittle = {"patch": [40.0, 42.0, 38.0, 41.0, 39.0], "blend": [30.0] * 5}  # 0.4x the reference on every class
    rel, cls, kind, ratios = relative_evidence(brittle, reference)
    assert cls == 2 and kind == "patch" and rel == pytest.approx(0.38 / 0.40)
    assert ratios["blend"] == [0.6] * 5
    backdoor = {"patch": [90.0, 85.0, 95.0, 10.0, 88.0], "blend": [45.0, 40.0, 44.0, 20.0, 46.0]}
    rel, cls, kind, _ = relative_evidence(backdoor, reference)
    assert (cls, kind) == (3, "patch") and rel == pytest.approx(0.10 / 0.88)
    # a reference trigger of size 0 gives no ratio for its class; the other classes still decide
    rel, cls, _, ratios = relative_evidence({"patch": [10.0, 50.0, 60.0]}, {"patch": [0.0, 100.0, 100.0]})
    assert math.isinf(ratios["patch"][0]) and cls == 1 and rel == pytest.approx(0.5 / 0.55)


def test_the_relative_rule_reverses_the_reference_to_every_class(toy, toy_build) -> None:
    model, clean, _, _ = toy
    reversal = reversal_scan(model, clean, scan_config(64), seed=0)
    sensitivity = {"score": 0.1, "suspected_target": 3, "verdict": "clean", "threshold": 0.41}
    found = {
        rule: find_suspect(
            model,
            clean,
            rule=rule,
            build_reference=toy_build,
            batch_size=64,
            sensitivity=sensitivity,
            reversal=reversal,
        )
        for rule in ("ratio", "relative")
    }
    assert found["ratio"].record["reversal"] is reversal and found["ratio"].record["sensitivity"] is sensitivity
    relative = found["relative"].record["vote"]
    sizes = relative["reference"]["sizes"]
    assert all(len(d) == clean.num_classes for d in sizes.values())  # every class, not only the candidates
    assert len(found["ratio"].record["vote"]["reference"]["sizes"]["patch"]) == len(relative["candidates"])
    model_sizes = {k: v["mask_l1"] for k, v in reversal["kinds"].items()}
    ref_lists = {k: [d[str(c)] for c in range(clean.num_classes)] for k, d in sizes.items()}
    measure, cls, _, _ = relative_evidence(model_sizes, ref_lists)
    assert relative["reference"]["measure"] == measure and found["relative"].target == cls == 0  # the toy's target
    assert found["relative"].evidence == (measure <= 0.5) and relative["rule"] == "relative"
    assert found["ratio"].evidence == (found["ratio"].record["vote"]["reference"]["measure"] <= 0.41)


def test_an_unknown_rule_names_the_field(toy, toy_build) -> None:
    model, clean, _, _ = toy
    with pytest.raises(ConfigError, match="suspect.evidence='median'"):
        find_suspect(model, clean, rule="median", build_reference=toy_build)
