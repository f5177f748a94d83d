"""Which class to suspect: the classes the scans name, and a reference model that judges between them.

Three voices name a class: the neuron-sensitivity scan (:mod:`pruneguard.scan.sensitivity`: where a model's errors
go under adversarial neuron perturbations) and Neural Cleanse's reversal with a patch and with a blend trigger
(:func:`pruneguard.scan.reversal.reversal_scan`: the class reached with the smallest stamp). Each voice alone is
fooled by classes that every model of the data reaches easily (bags and shirts on Fashion-MNIST), and a majority
of voices can be too (two reversal kinds agreeing on bags while the sensitivity scan names a WaNet target).

:func:`reference_suspect` judges the named classes (:func:`vote_candidates`) by what they cost *without* a
backdoor: a reference model of the same architecture, trained on the clean data alone, has its trigger reversed to
each candidate, and the candidate whose trigger on the suspect model is smallest relative to the reference's wins.
A naturally easy class is easy for the reference too and its ratio stays near the other classes'; an implanted
target is easy only for the suspect. ``python benchmarks/evidence_dev.py`` and ``evidence_rules.py`` measure the
rule on the development zoo.

:func:`vote_suspects` (the majority of the voices) and :func:`combine_suspects` (two scans' strengths relative to
their cuts) are kept for the benchmarks that compare suspect rules (``benchmarks/suspect_votes.py``).
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
