"""The verdict sentence that opens the purify report."""

from __future__ import annotations

from typing import Any

from pruneguard.reports.verdict import guard_is_blind, purify_verdict


def _report(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "recipe": "default",
        "before": {"accuracy": 0.9, "validation_accuracy": 0.9, "asr": 0.99},
        "after": {"accuracy": 0.89, "validation_accuracy": 0.895, "asr": 0.004},
        "suspect": {"target": 0, "evidence": True, "reasons": ["the scan scored 0.62 (cut 0.41)"]},
        "steps": ["anp", "unlearn"],
        "pruned_neurons": 14,
        "total_neurons": 224,
        "repair": {"method": "unlearn", "triggers": [{}, {}], "target": 0},
        "guard": {"scale": 1.0},
        "validation_drop": 0.005,
    }
    base.update(kw)
    return base


def test_a_purified_model_names_class_evidence_action_and_figures() -> None:
    v = purify_verdict(_report(), 0.02, True)
    assert v["status"] == "purified" and v["exit_code"] == 0
    s = v["sentence"]
    assert s.startswith("Purified: class 0 suspected (the scan scored 0.62 (cut 0.41))")
    assert "pruned 14 of 224 neurons and unlearned 2 reversed trigger(s) towards class 0" in s
    assert "validation accuracy 90.0% → 89.5%" in s and "benchmark ASR 99.0% → 0.4%" in s


def test_no_evidence_means_unchanged_and_a_broken_guard_means_failed() -> None:
    clean = _report(suspect={"target": 8, "evidence": False, "reasons": ["class 8 is no outlier"]}, steps=[])
    v = purify_verdict(clean, 0.02, True)
    assert v["status"] == "unchanged" and v["sentence"].startswith("No evidence of a backdoor (class 8 is no outlier)")
    broken = purify_verdict(_report(validation_drop=0.031), 0.02, True)
    assert broken["status"] == "failed" and broken["exit_code"] == 3
    assert broken["sentence"].startswith("FAILED:") and "fell 3.1 points (limit 2.0)" in broken["sentence"]
    undone = purify_verdict(_report(pruned_neurons=0, guard={"scale": 0.0}, validation_drop=0.0), 0.02, True)
    assert undone["status"] == "failed" and "was undone" in undone["sentence"]
    scaled = purify_verdict(_report(guard={"scale": 0.5}), 0.02, True)
    assert scaled["status"] == "purified" and "scaled back to 0.5 by the accuracy guard" in scaled["sentence"]


def test_a_validation_part_too_small_for_the_limit_is_called_out() -> None:
    # 12 images (60 clean images, 20% held out): one image is 8.3 points, the guard cannot see a 2-point drop
    tiny = purify_verdict(_report(validation_samples=12), 0.02, True)
    assert tiny["status"] == "purified" and "Caution: the validation part has 12 images" in tiny["sentence"]
    assert "one image is 8.3 points, more than the 2.0-point limit" in tiny["sentence"]
    assert "Caution" not in purify_verdict(_report(validation_samples=120), 0.02, True)["sentence"]


def test_a_repair_refused_for_a_blind_guard_is_a_failed_verdict() -> None:
    # one image weighs more than the limit below 50 images at 2 points; none without a guard or validation data
    assert guard_is_blind(0.02, 49) and not guard_is_blind(0.02, 50) and not guard_is_blind(0.02, 120)
    assert not guard_is_blind(None, 12) and not guard_is_blind(0.02, 0)
    refused = _report(
        blind_guard_refused=True, validation_samples=12, steps=[], after=_report()["before"], validation_drop=0.0
    )
    v = purify_verdict(refused, 0.02, True)
    assert v["status"] == "failed" and v["exit_code"] == 3
    assert v["sentence"].startswith("FAILED: class 0 suspected (the scan scored 0.62 (cut 0.41)), but the validation")
    assert "12 images (one image is 8.3 points, more than the 2.0-point limit)" in v["sentence"]
    assert "returned unchanged" in v["sentence"] and "unguarded_repair: true" in v["sentence"]
    # without evidence the model is unchanged for that reason, whatever the validation size
    clean = {**refused, "suspect": {"target": 8, "evidence": False, "reasons": ["class 8 is no outlier"]}}
    assert purify_verdict(clean, 0.02, True)["status"] == "unchanged"


def test_a_round_by_round_guard_names_the_rounds_it_did_not_keep_whole() -> None:
    rounds = [
        {"round": 1, "scale": 1.0, "tried": []},
        {"round": 2, "scale": 0.5, "tried": []},
        {"round": 3, "scale": 0.0, "tried": []},
    ]
    triggers = [{"round": n} for n in (1, 1, 2, 2, 3, 3)]
    repair = {"method": "unlearn", "triggers": triggers, "target": 0}
    v = purify_verdict(_report(guard={"scale": 0.5, "rounds": rounds}, repair=repair), 0.02, True)
    assert v["status"] == "purified" and "unlearned 4 reversed trigger(s)" in v["sentence"]  # round 3's undone
    assert "(round 2 scaled back to 0.5, round 3 undone by the accuracy guard)" in v["sentence"]
    whole = [{"round": 1, "scale": 1.0, "tried": []}, {"round": 2, "scale": 1.0, "tried": []}]
    assert (
        "accuracy guard" not in purify_verdict(_report(guard={"scale": 1.0, "rounds": whole}), 0.02, True)["sentence"]
    )
    first = [{"round": 1, "scale": 0.0, "tried": []}]
    undone = purify_verdict(_report(pruned_neurons=0, guard={"scale": 0.0, "rounds": first}), 0.02, True)
    assert undone["status"] == "failed" and "was undone" in undone["sentence"]


def test_a_backoff_guard_names_the_rates_and_counts_a_round_run_again_once() -> None:
    rounds = [
        {"round": 1, "lr": 0.01, "scale": 0.0, "tried": []},
        {"round": 1, "lr": 0.01 / 3, "scale": 0.5, "tried": []},
        {"round": 2, "lr": 0.01 / 9, "scale": 1.0, "tried": []},
        {"round": 3, "lr": 0.01 / 9, "scale": 0.0, "tried": []},
    ]
    triggers = [{"round": n} for n in (1, 1, 2, 2, 3, 3)]
    repair = {"method": "unlearn", "triggers": triggers, "target": 0, "lr": 0.01}
    v = purify_verdict(_report(guard={"scale": 0.5, "rounds": rounds}, repair=repair), 0.02, True)
    # round 1 was kept at its second rate: its triggers count; round 3's do not
    assert v["status"] == "purified" and "unlearned 4 reversed trigger(s)" in v["sentence"]
    assert (
        "(round 1 at 0.01 undone, round 1 at 0.00333 scaled back to 0.5, round 3 at 0.00111 undone by the "
        "accuracy guard; the learning rate lowered to 0.00111)"
    ) in v["sentence"]


def test_a_retried_repair_names_its_learning_rate_in_three_digits() -> None:
    repair = {"method": "unlearn", "triggers": [{}, {}], "target": 0, "lr": 0.01 / 3, "attempts": [{}, {}]}
    v = purify_verdict(_report(repair=repair), 0.02, True)
    assert "at a learning rate of 0.00333 (the guard refused the higher ones)" in v["sentence"]


def _recheck(ratio: float, before: float = 0.05, score: float = 0.2) -> dict[str, Any]:
    reference = {"original": before, "repaired": ratio, "cut": 0.41, "judged": before <= 0.41}
    reference["evidence"] = reference["judged"] and ratio <= 0.41
    sensitivity = {
        "original": {"score": 0.62, "suspected_target": 0},
        "repaired": {"score": score, "suspected_target": 0 if score > 0.41 else 3},
        "cut": 0.41,
        "judged": True,
        "evidence": score > 0.41,
    }
    tests = {"sensitivity": sensitivity, "reference": reference}
    return {
        "target": 0,
        "images": 120,
        "tests": tests,
        "judged": any(t["judged"] for t in tests.values()),
        "evidence": any(t["evidence"] for t in tests.values()),
    }


def test_a_trigger_the_recheck_still_finds_is_a_caution_on_the_purified_model() -> None:
    kept = purify_verdict(_report(recheck=_recheck(0.10)), 0.02, True)
    assert kept["status"] == "purified" and kept["exit_code"] == 0
    s = kept["sentence"]
    assert s.startswith("Purified, with a caution: class 0 suspected") and "the backdoor may still be there" in s
    assert "class 0's reversed trigger is 0.10 times the reference's (0.05 before, cut 0.41) on 120 held-out" in s
    assert "sensitivity" not in s  # only the tests that still flag the purified model are named
    scan = purify_verdict(_report(recheck=_recheck(0.72, score=0.55)), 0.02, True)["sentence"]
    assert "Caution" in scan and "scan scores 0.55, its errors going to class 0 (0.62 before" in scan
    gone = purify_verdict(_report(recheck=_recheck(0.72)), 0.02, True)["sentence"]
    assert gone.startswith("Purified: ") and "Caution" not in gone
    assert (
        "Rechecked on the purified model: the neuron-sensitivity scan scores 0.20, its errors going to class 3" in gone
    )
    assert "0.72 times the reference's (0.05 before, cut 0.41) on 120 held-out images" in gone
    blind = _recheck(0.30, before=0.52)
    blind["tests"]["sensitivity"].update(judged=False, evidence=False)
    blind.update(judged=False, evidence=False)
    assert "The recheck cannot judge the result" in purify_verdict(_report(recheck=blind), 0.02, True)["sentence"]
    warped = _recheck(0.72)
    warped["tests"]["warp"] = {"original": 0.03, "repaired": 0.2, "cut": 0.436, "judged": True, "evidence": True}
    warped.update(judged=True, evidence=True)
    s = purify_verdict(_report(recheck=warped), 0.02, True)["sentence"]
    assert "Caution" in s and "class 0's reversed warp is 0.20 times the median class's (0.03 before, cut 0.44)" in s
    # the accuracy limit comes first: a run that broke it fails for that reason
    both = purify_verdict(_report(validation_drop=0.031, recheck=_recheck(0.10)), 0.02, True)
    assert both["status"] == "failed" and "fell 3.1 points" in both["sentence"]


def test_the_validation_figures_say_how_many_predictions_moved_and_how_precise_the_drop_is() -> None:
    change = {"images": 120, "changed": 16, "lost": 8, "gained": 8, "drop": 0.0, "drop_se": 0.0333}
    s = purify_verdict(_report(validation_change=change), 0.02, True)["sentence"]
    assert "validation accuracy 90.0% → 89.5% (16 of its 120 predictions changed; standard error of the drop " \
        "3.3 points)" in s  # fmt: skip
    still = {**change, "changed": 0, "lost": 0, "gained": 0, "drop_se": 0.0}
    assert "predictions changed" not in purify_verdict(_report(validation_change=still), 0.02, True)["sentence"]
    assert "predictions changed" not in purify_verdict(_report(), 0.02, True)["sentence"]  # older reports


def test_a_measure_close_to_its_cut_is_called_out_either_way() -> None:
    def vote(measure: float) -> dict[str, Any]:
        return {"reference": {"measure": measure, "cut": 0.436}}

    near = purify_verdict(_report(vote=vote(0.42)), 0.02, True)["sentence"]
    assert "Caution: the evidence measure (0.420) is within 0.03 of its cut (0.436)" in near
    clean = _report(vote=vote(0.45), suspect={"target": 8, "evidence": False, "reasons": ["no outlier"]}, steps=[])
    spared = purify_verdict(clean, 0.02, True)
    assert spared["status"] == "unchanged" and "within 0.03 of its cut" in spared["sentence"]
    for far in (0.2, 0.5):
        assert "within 0.03" not in purify_verdict(_report(vote=vote(far)), 0.02, True)["sentence"]
    assert "within 0.03" not in purify_verdict(_report(), 0.02, True)["sentence"]  # no finder record


def test_a_measure_close_to_the_corroborated_bands_edge_is_called_out_where_the_scan_agrees() -> None:
    vote = {"suspected_target": 7, "reference": {"measure": 0.554, "cut": 0.382, "corroborated_cut": 0.558}}
    agreeing = {"verdict": "suspicious", "suspected_target": 7, "score": 0.57}
    s = purify_verdict(_report(vote=vote, scan=agreeing), 0.02, True)["sentence"]
    assert "Caution: the evidence measure (0.554) is within 0.03 of the edge of the band (0.558)" in s
    for scan in ({**agreeing, "suspected_target": 5}, {**agreeing, "verdict": "clean"}):  # the edge decides nothing
        assert "within 0.03" not in purify_verdict(_report(vote=vote, scan=scan), 0.02, True)["sentence"]


def test_the_verdict_names_the_limit_that_held_a_repair_back() -> None:
    """A round the class guard held back (the suspected class's validation images taken away) is named as such;
    one the accuracy held back keeps its name; both at once name both."""
    limits = {"floor": 0.88, "min_suspect_kept": 0.6, "suspect_images": 12}

    def round_(n: int, scale: float, accuracy: float, kept: float) -> dict[str, Any]:
        return {"round": n, "scale": scale, "tried": [{"scale": 1.0, "accuracy": accuracy, "suspect_kept": kept}]}

    repair = {"method": "unlearn", "triggers": [{"round": 1}, {"round": 2}], "target": 6}
    by_class = _report(guard={**limits, "scale": 0.5, "rounds": [round_(1, 0.5, 0.9, 0.25)]}, repair=repair)
    s = purify_verdict(by_class, 0.02, True)["sentence"]
    assert "(round 1 scaled back to 0.5 by the class guard (at least 60.0% of the 12 validation images" in s
    assert "assigns to class 6 must stay there))" in s
    by_accuracy = _report(guard={**limits, "scale": 0.5, "rounds": [round_(1, 0.5, 0.8, 0.9)]}, repair=repair)
    assert "(round 1 scaled back to 0.5 by the accuracy guard)" in purify_verdict(by_accuracy, 0.02, True)["sentence"]
    both = [round_(1, 0.75, 0.8, 0.9), round_(2, 0.0, 0.9, 0.1)]
    s = purify_verdict(_report(guard={**limits, "scale": 0.75, "rounds": both}, repair=repair), 0.02, True)["sentence"]
    assert "(round 1 scaled back to 0.75, round 2 undone by the accuracy and class guards (" in s
    undone = _report(pruned_neurons=0, guard={**limits, "scale": 0.0, "rounds": [round_(1, 0.0, 0.9, 0.2)]})
    v = purify_verdict({**undone, "repair": repair}, 0.02, True)
    assert v["status"] == "failed" and v["exit_code"] == 3
    assert "every change broke the limits of the class guard" in v["sentence"] and "was undone" in v["sentence"]


def test_a_pruning_undone_for_the_repair_is_said_instead_of_the_pruning() -> None:
    undone = _report(pruned_neurons=0, pruning_undone={"pruned": 2, "after_pruning": {}})
    s = purify_verdict(undone, 0.02, True)["sentence"]
    assert "undid ANP's pruning of 2 of 224 neurons (the repair fitted the guard only without it)" in s
    assert "pruned 0 of" not in s and "pruned 14 of 224" in purify_verdict(_report(), 0.02, True)["sentence"]
