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

:func:`vote_suspects` counts three voices instead of two strengths: the sensitivity scan and each kind of the
reversal (patch, blend) name a class; a class named by two of the three wins, and without a majority the
reversal's strongest kind decides. On the same models (true target 0; `python benchmarks/suspect_votes.py`,
sensitivity/patch/blend): BadNets 0/0/8, Blend 0/0/0, IAB 0/0/8, LC 4/0/6 (no
majority: the patch reversal, 1.76), SIG 6/8/0 (no majority: the blend reversal, 1.55), Trojan 0/0/0, WaNet
0/8/0, and an earlier IAB model 0/0/8: class 0 on all eight, where each strength rule missed one. Classes that
are naturally easy to reach (8, bags, and 6, shirts, on Fashion-MNIST) won one voice now and then, never two.
Eight models are a small sample; the report keeps every voice so that a user can check the call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

__all__ = ["ANOMALY_CUT", "combine_suspects", "vote_suspects"]

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


def vote_suspects(sensitivity_target: int | None, reversal_kinds: Mapping[str, Mapping[str, Any]]) -> tuple[int, str]:
    """The suspected class by a majority of the scans' voices, and how it was reached (``"vote"`` or
    ``"reversal"``).

    Args:
        sensitivity_target: the neuron-sensitivity scan's class (None: it saw no error, no voice).
        reversal_kinds: :func:`~pruneguard.defenses.unlearning.reversal_scan`'s ``kinds``: per trigger kind its
            ``suspected_target`` and ``anomaly_index``; each kind is a voice.

    A class named by more than half of the voices wins; otherwise the kind with the largest anomaly index names
    it (the reversal scan's own choice).
    """
    if not reversal_kinds:
        raise ValueError("reversal_kinds is empty; accepted: the 'kinds' of a reversal scan (at least one kind)")
    voices = [int(k["suspected_target"]) for k in reversal_kinds.values()]
    if sensitivity_target is not None:
        voices.append(int(sensitivity_target))
    cls, n = Counter(voices).most_common(1)[0]
    if n * 2 > len(voices):
        return cls, "vote"
    strongest = max(reversal_kinds.values(), key=lambda k: float(k["anomaly_index"]))
    return int(strongest["suspected_target"]), "reversal"
