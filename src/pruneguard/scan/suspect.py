"""Which class to suspect when two trigger-agnostic scans disagree.

The neuron-sensitivity scan (:mod:`pruneguard.scan.sensitivity`) and the trigger-reversal scan
(:func:`pruneguard.scan.reversal.reversal_scan`) each name a suspected target class with a strength on its own
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

Without a majority the strongest kind was a weak judge: on a second draw of the six models (seeded training)
the voices were LC 4/0/8 (blend, 1.98 against the patch's 1.61: class 8, wrong) and SIG 4/8/0 (blend, 1.48
against 1.42: right by 0.06). :func:`reference_suspect` breaks such ties by what a class costs *without* the
backdoor: a reference model of the same architecture, trained on the clean split alone, has its own trigger
reversed to each candidate class, and the candidate whose suspect-model trigger is smallest relative to the
reference's wins. A naturally easy class (bags are reached by a small blob on any Fashion-MNIST model) is easy
for the reference too, and its ratio stays near 1; an implanted target is easy only for the suspect. On the
four no-majority models at hand it named the target every time, the target's ratio 0.58-0.70 against
0.80-1.04 for the other candidates (`python benchmarks/reference_tiebreak.py`,
`benchmarks/results/reference_tiebreak.json`). Four models are a small sample.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ANOMALY_CUT", "combine_suspects", "reference_suspect", "vote_candidates", "vote_suspects"]

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
        reversal_kinds: :func:`~pruneguard.scan.reversal.reversal_scan`'s ``kinds``: per trigger kind its
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


def vote_candidates(sensitivity_target: int | None, reversal_kinds: Mapping[str, Mapping[str, Any]]) -> list[int]:
    """The distinct classes the voices of :func:`vote_suspects` name, in ascending order."""
    voices = {int(k["suspected_target"]) for k in reversal_kinds.values()}
    if sensitivity_target is not None:
        voices.add(int(sensitivity_target))
    return sorted(voices)


def reference_suspect(
    candidates: Sequence[int],
    suspect_sizes: Mapping[str, Sequence[float]],
    reference_sizes: Mapping[str, Mapping[int, float]],
) -> tuple[int, dict[str, dict[int, float]]]:
    """The candidate whose reversed trigger on the suspect model is smallest relative to a reference model's, and
    every ratio (per kind, per candidate: suspect size / reference size).

    Args:
        candidates: the classes to judge (at least one).
        suspect_sizes: per trigger kind, the suspect model's trigger size (mask L1) for every class.
        reference_sizes: per kind (the same kinds), the reference model's size for each candidate.

    A candidate's ratio is its smallest over the kinds; the smallest ratio wins (the lower class on a tie).
    """
    if not candidates:
        raise ValueError("candidates is empty; accepted: at least one class")
    if not suspect_sizes or set(suspect_sizes) != set(reference_sizes):
        raise ValueError(
            f"suspect_sizes has kinds {sorted(suspect_sizes)} and reference_sizes {sorted(reference_sizes)}; "
            "accepted: the same kinds, at least one"
        )
    ratios: dict[str, dict[int, float]] = {}
    for kind, sizes in suspect_sizes.items():
        ratios[kind] = {}
        for c in candidates:
            ref = float(reference_sizes[kind][c])
            ratios[kind][c] = float(sizes[c]) / ref if ref > 0 else math.inf
    best = min(sorted(candidates), key=lambda c: min(r[c] for r in ratios.values()))
    return int(best), ratios
