from __future__ import annotations

from pruneguard.scan.suspect import ANOMALY_CUT, combine_suspects


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
