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


def test_a_kind_without_reference_sizes_is_judged_against_the_models_own_classes() -> None:
    reference = {"patch": [100.0] * 5}
    model = {"patch": [90.0, 85.0, 95.0, 80.0, 88.0], "warp": [300.0, 280.0, 20.0, 310.0, 290.0]}
    rel, cls, kind, ratios = relative_evidence(model, reference)
    assert (cls, kind) == (2, "warp") and rel == pytest.approx(20.0 / 290.0)
    assert ratios["warp"] == model["warp"]  # its "ratios" are its sizes


def test_the_warp_kind_joins_the_reversal_and_is_judged_without_the_reference(toy, toy_build) -> None:
    """With ``kinds`` naming the warp, the model is reversed with it too and it takes part in the relative rule,
    judged against the model's own classes: the reference is reversed with the stamps only."""
    model, clean, _, _ = toy
    sensitivity = {"score": 0.1, "suspected_target": 3, "verdict": "clean", "threshold": 0.41}
    reversal = reversal_scan(model, clean, scan_config(64), kinds=("patch", "warp"), seed=0)
    found = find_suspect(
        model,
        clean,
        rule="relative",
        build_reference=toy_build,
        batch_size=64,
        sensitivity=sensitivity,
        reversal=reversal,
    )
    sizes = found.record["vote"]["reference"]["sizes"]
    assert set(reversal["kinds"]) == {"patch", "warp"} and set(sizes) == {"patch"}
    model_sizes = {k: v["mask_l1"] for k, v in reversal["kinds"].items()}
    ref_lists = {k: [d[str(c)] for c in range(clean.num_classes)] for k, d in sizes.items()}
    assert found.record["vote"]["reference"]["measure"] == relative_evidence(model_sizes, ref_lists)[0]
    with pytest.raises(ConfigError, match="kinds=\\('star',\\)"):
        find_suspect(model, clean, build_reference=toy_build, kinds=("star",))


def test_the_reasons_say_what_a_warp_needs(toy, toy_build) -> None:
    """A warp that decides names its size in pixels, not as a stamp's "trigger ... times the reference's"."""
    model, clean, _, _ = toy
    sensitivity = {"score": 0.1, "suspected_target": 3, "verdict": "clean", "threshold": 0.41}
    reversal = reversal_scan(model, clean, scan_config(64), kinds=("patch", "warp"), seed=0)
    warp = reversal["kinds"]["warp"]["mask_l1"]
    # the warp's sizes made flat but one class at a hundredth of the others: the warp decides, and under a cut of
    # a thousandth it is no evidence
    flat = {**reversal, "kinds": {**reversal["kinds"], "warp": {**reversal["kinds"]["warp"], "mask_l1": [
        max(warp) * (0.01 if c == 1 else 1.0) for c in range(len(warp))]}}}  # fmt: skip
    flat["kinds"]["patch"] = {**flat["kinds"]["patch"], "mask_l1": [1e6] * len(warp)}
    found = find_suspect(
        model,
        clean,
        rule="relative",
        relative_cut=0.001,
        build_reference=toy_build,
        batch_size=64,
        sensitivity=sensitivity,
        reversal=flat,
    )
    assert found.record["vote"]["kind"] == "warp" and not found.evidence
    assert any("class, 1, needs a warp of" in r for r in found.reasons), found.reasons
    assert not any("a trigger a warp" in r for r in found.reasons)


def test_a_measure_in_the_band_above_the_cut_counts_only_with_the_scan_naming_its_class(toy, toy_build) -> None:
    """``corroborated_cut``: a relative measure above the cut but within the band is evidence when the
    sensitivity scan is suspicious and names the same class; a scan naming another class, or a clean scan, leaves
    it unflagged."""
    from pruneguard.scan.finder import corroborated

    model, clean, _, _ = toy
    reversal = reversal_scan(model, clean, scan_config(64), seed=0)

    def find(scan: dict, **cuts: float) -> object:
        return find_suspect(
            model, clean, rule="relative", build_reference=toy_build, batch_size=64, sensitivity=scan,
            reversal=reversal, sensitivity_evidence=False, **cuts,
        )  # fmt: skip

    named = {"score": 0.6, "suspected_target": 0, "verdict": "suspicious", "threshold": 0.41}
    first = find(named, relative_cut=1.0)
    measure = first.record["vote"]["reference"]["measure"]
    assert first.target == 0 and first.evidence and 0 < measure < 0.9  # the toy's target, far under any cut
    band = {"relative_cut": measure / 2, "corroborated_cut": min(1.0, measure * 1.5)}
    agreed = find(named, **band)
    assert agreed.evidence and agreed.record["vote"]["corroborated"] is True
    assert agreed.record["vote"]["reference"]["corroborated_cut"] == band["corroborated_cut"]
    assert any("names the same class" in r for r in agreed.reasons), agreed.reasons
    elsewhere = find({**named, "suspected_target": 4}, **band)
    assert not elsewhere.evidence and "corroborated" not in elsewhere.record["vote"]
    # the rule itself, on records: a clean scan, or a measure past the band, is no evidence
    assert not corroborated(measure, 0, {**named, "verdict": "clean"}, band["corroborated_cut"])
    assert not corroborated(measure, 0, named, measure * 0.9) and corroborated(measure, 0, named, measure)
    assert not corroborated(measure, 0, None, 1.0) and not corroborated(measure, 0, named, None)
    # the ratio rule has no band (as it has no relative cut)
    ratio = find_suspect(
        model, clean, rule="ratio", reference_ratio=1e-6, corroborated_cut=1.0, build_reference=toy_build,
        batch_size=64, sensitivity=named, reversal=reversal, sensitivity_evidence=False,
    )  # fmt: skip
    assert not ratio.evidence and "corroborated" not in ratio.record["vote"]
