"""Which class to suspect when two trigger-agnostic scans disagree.

The neuron-sensitivity scan (:mod:`pruneguard.scan.sensitivity`) and the trigger-reversal scan
(:func:`pruneguard.defenses.unlearning.reversal_scan`) each name a suspected target class with a strength on its own
scale: the sensitivity score (the share of perturbed errors that go to one class; calibrated cut 0.41) and the
reversal's anomaly index (Neural Cleanse's cut: 2). Each fails where the other does not. The rule: each
strength divided by its own cut, the larger decides. Measured on the ANP table's Fashion-MNIST models (an
option, not the table's default): on IAB the sensitivity scan named the target (score 0.404, 0.99 of its cut)
where the reversal named class 8 (blend anomaly 1.67, 0.84 of its cut), and the rule chose right; on SIG
(delta 40/255) the reversal named the target (1.55, 0.78) and the sensitivity scan class 6 (0.321, 0.78), and
the rule chose wrong by 0.007. Near a tie neither scan is evidence enough: the two strengths are reported so a
user sees it.
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
