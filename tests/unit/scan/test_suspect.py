from __future__ import annotations

import pytest

from pruneguard.scan.suspect import ANOMALY_CUT, combine_suspects, reference_suspect, vote_candidates, vote_suspects


def test_agreeing_scans_name_their_class() -> None:
    assert combine_suspects(3, 0.1, 0.41, 3, 0.5) == (3, "both")


def test_the_scan_stronger_relative_to_its_own_cut_decides() -> None:
    # IAB on Fashion-MNIST: sensitivity 0.404 of a 0.41 cut (0.99) beats a reversal anomaly of 1.67 of 2 (0.84)
    assert combine_suspects(0, 0.404, 0.41, 8, 1.67) == (0, "sensitivity")
    # a weak sensitivity score (0.20 of 0.41: 0.49) loses to a clear anomaly (2.3 of 2: 1.15)
    assert combine_suspects(6, 0.20, 0.41, 0, 2.3) == (0, "reversal")
    # the same strengths, the cuts swapped: the other scan decides
    assert combine_suspects(0, 0.404, 0.41, 8, 1.67, anomaly_cut=1.0) == (8, "reversal")
    assert ANOMALY_CUT == 2.0


def test_a_tie_or_a_scan_without_errors_leaves_it_to_the_reversal() -> None:
    assert combine_suspects(1, 0.41, 0.41, 2, 2.0) == (2, "reversal")
    assert combine_suspects(None, 0.0, 0.41, 5, 0.1) == (5, "reversal")


def _kinds(patch: tuple[int, float], blend: tuple[int, float]) -> dict[str, dict[str, float]]:
    return {k: {"suspected_target": c, "anomaly_index": a} for k, (c, a) in (("patch", patch), ("blend", blend))}


def test_two_voices_of_three_name_the_suspect() -> None:
    # IAB on Fashion-MNIST: sensitivity 0, patch 0 (0.94), blend 8 (1.67): the stronger reversal kind is outvoted
    assert vote_suspects(0, _kinds((0, 0.94), (8, 1.67))) == (0, "vote")
    # WaNet: sensitivity 0, patch 8 (1.92), blend 0 (1.39)
    assert vote_suspects(0, _kinds((8, 1.92), (0, 1.39))) == (0, "vote")
    # the two reversal kinds agreeing outvote the sensitivity scan
    assert vote_suspects(6, _kinds((3, 0.5), (3, 0.7))) == (3, "vote")


def test_without_a_majority_the_strongest_reversal_kind_decides() -> None:
    # SIG: sensitivity 6, patch 8 (1.17), blend 0 (1.55)
    assert vote_suspects(6, _kinds((8, 1.17), (0, 1.55))) == (0, "reversal")
    # LC: sensitivity 4, patch 0 (1.76), blend 6 (1.52)
    assert vote_suspects(4, _kinds((0, 1.76), (6, 1.52))) == (0, "reversal")


def test_a_scan_without_errors_has_no_voice() -> None:
    assert vote_suspects(None, _kinds((2, 0.3), (2, 0.9))) == (2, "vote")
    # two voices that disagree: no majority
    assert vote_suspects(None, _kinds((2, 0.3), (5, 0.9))) == (5, "reversal")
    # one kind only: it is the majority of its own voice, or of two with the sensitivity scan
    assert vote_suspects(None, {"patch": {"suspected_target": 7, "anomaly_index": 0.1}}) == (7, "vote")
    assert vote_suspects(1, {"patch": {"suspected_target": 7, "anomaly_index": 0.1}}) == (7, "reversal")


def test_no_reversal_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="reversal_kinds"):
        vote_suspects(0, {})


def test_vote_candidates_are_the_distinct_classes_named() -> None:
    assert vote_candidates(4, _kinds((0, 1.61), (8, 1.98))) == [0, 4, 8]
    assert vote_candidates(0, _kinds((0, 1.0), (8, 1.2))) == [0, 8]
    assert vote_candidates(None, _kinds((3, 1.0), (3, 1.2))) == [3]


def test_the_reference_breaks_a_tie_by_the_size_ratio() -> None:
    # LC, second draw: the blend kind's class 8 is small on the suspect (119.6) but as small on a reference model
    # (131.9: 0.91); the patch kind's class 0 (17.5) costs the reference 32.2 (0.54): class 0 wins
    suspect = {"patch": [17.5] + [40.0] * 7 + [27.3, 40.0], "blend": [181.5] + [150.0] * 7 + [119.6, 150.0]}
    reference = {"patch": {0: 32.2, 8: 20.9}, "blend": {0: 181.4, 8: 131.9}}
    best, ratios = reference_suspect([0, 8], suspect, reference)
    assert best == 0
    assert ratios["patch"][0] == pytest.approx(17.5 / 32.2) and ratios["blend"][8] == pytest.approx(119.6 / 131.9)
    # the same sizes, the reference finding class 0 as cheap as the suspect does: class 8 wins
    assert reference_suspect([0, 8], suspect, {"patch": {0: 17.5, 8: 20.9}, "blend": {0: 181.4, 8: 131.9}})[0] == 8
    # a tie goes to the lower class; a reference size of 0 never wins
    assert reference_suspect([5, 2], {"patch": [1.0] * 10}, {"patch": {5: 2.0, 2: 2.0}})[0] == 2
    assert reference_suspect([1, 2], {"patch": [1.0] * 10}, {"patch": {1: 0.0, 2: 9.0}})[0] == 2


def test_reference_suspect_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="candidates is empty"):
        reference_suspect([], {"patch": [1.0]}, {"patch": {}})
    with pytest.raises(ValueError, match="the same kinds"):
        reference_suspect([0], {"patch": [1.0]}, {"blend": {0: 1.0}})
