"""Which class to suspect when two trigger-agnostic scans disagree.

The neuron-sensitivity scan (:mod:`pruneguard.scan.sensitivity`) and the trigger-reversal scan
(:func:`pruneguard.defenses.unlearning.reversal_scan`) each name a suspected target class with a strength on its own
scale: the sensitivity score (the share of perturbed errors that go to one class; calibrated cut 0.41) and the
reversal's anomaly index (Neural Cleanse's cut: 2). Each fails where the other does not. On the ANP table's
Fashion-MNIST models the sensitivity scan named the target of IAB, WaNet and Trojan but class 6 on SIG (score 0.20,
half its cut); the reversal named SIG's (anomaly 2.3) but class 8 on IAB (1.67) and WaNet. The rule: each
strength divided by its own cut, the larger decides.
"""

from __future__ import annotations

__all__ = ["ANOMALY_CUT", "combine_suspects"]

ANOMALY_CUT = 2.0  # Neural Cleanse flags an anomaly index above 2


def combine_suspects(
    sensitivity_target: int | None,
    sensitivity_score: float,
    sensitivity_cut: float,
    reversal_target: int,
    reversal_anomaly: float,
    anomaly_cut: float = ANOMALY_CUT,
) -> tuple[int, str]:
    """The suspected class and which scan named it (``"sensitivity"`` or ``"reversal"``; ``"both"`` when they
    agree): each scan's strength relative to its cut, the larger wins, the reversal on a tie or when the
    sensitivity scan saw no error (``sensitivity_target`` None)."""
    if sensitivity_target == reversal_target:
        return reversal_target, "both"
    if sensitivity_target is None or sensitivity_cut <= 0 or anomaly_cut <= 0:
        return reversal_target, "reversal"
    if sensitivity_score / sensitivity_cut > reversal_anomaly / anomaly_cut:
        return sensitivity_target, "sensitivity"
    return reversal_target, "reversal"
