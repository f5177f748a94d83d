"""The suspect finder: which class would a backdoor send images to, and is there evidence of one at all?

Three voices name candidate classes: the neuron-sensitivity scan (where the errors of a model under adversarial
neuron perturbations go) and Neural Cleanse's reversal with a patch and with a blend trigger (the class reached
with the smallest stamp). A reference model trained on the clean data alone judges them: the candidate whose
reversed trigger on the model is smallest relative to the same trigger on the reference is the suspect
(:func:`~pruneguard.scan.suspect.reference_suspect`), majority or not.

Evidence is judged separately from the choice, because every model has a class that is easiest to reach. Two
rules: ``ratio``, the suspect's trigger on the model at most ``reference_ratio`` times the reference's (the
smaller of the two kinds); ``relative`` (:func:`relative_evidence`), the reference reversed to every class and the
smallest ratio at most ``relative_cut`` times the median class's ratio, its class the suspect. A fully trained
model is often easier to trigger than a reference trained on a few hundred images on every class at once (clean
development models reached ratios of 0.36-0.40); the median class's ratio measures that, so only a class that
stands out from the model's own classes counts. Optionally a suspicious sensitivity scan is evidence by itself
(``sensitivity_evidence``), or evidence for a relative measure in a band above the cut when it names the same class
(``corroborated_cut``): two tests of different kinds agreeing on a class where the reversal alone is unsure. The
default recipe's rule, cut and band were chosen on the development splits (``benchmarks/evidence_dev.py``,
``evidence_rules.py``, ``evidence_cut.py``). Neural Cleanse's anomaly index is kept in the record but
decides nothing (it flags clean models: 5.8 on a clean development model).

:func:`recheck_suspect` applies the same reference test to a repaired model: a repair that the accuracy guard held
back, or that unlearned a trigger other than the backdoor's, leaves the suspect's trigger as small as before, and
the verdict must not call such a model purified.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.scan.reference import reference_trigger_sizes, train_reference
from pruneguard.scan.reversal import REVERSAL_KINDS, TRIGGER_KINDS, reversal_scan, scan_config
from pruneguard.scan.sensitivity import ScanConfig, ScanResult, scan_model
from pruneguard.scan.suspect import reference_suspect, vote_candidates

__all__ = [
    "SuspectFinding",
    "find_suspect",
    "recheck_suspect",
    "relative_evidence",
    "EVIDENCE_RULES",
    "SUSPECT_METHODS",
    "SELF_JUDGED",
    "corroborated",
]

logger = logging.getLogger(__name__)
# kinds the reference does not judge. A reference trained on a few hundred images has not learnt the smooth
# deformations a fully trained model shrugs off: warps cannot reach some of its classes at all, and a ratio to
# such a class flags clean models (a clean development VGG: 0.19 of the median, class 7, far under any cut).
# Against the model's own classes, WaNet's target needs 0.01-0.06 of the median class's warp, a clean model's
# smallest about 0.76 (benchmarks/DEVELOPMENT.md).
SELF_JUDGED = ("warp",)
SUSPECT_METHODS = ("none", "sensitivity", "reversal", "vote")
EVIDENCE_RULES = ("ratio", "relative")


def relative_evidence(
    model_sizes: dict[str, list[float]], reference_sizes: dict[str, list[float]]
) -> tuple[float, int, str, dict[str, list[float]]]:
    """The ``relative`` evidence measure: per trigger kind, every class's ratio (model size / reference size),
    and the smallest ratio divided by the median class's; the kind where that is smallest decides. A kind without
    reference sizes (the warp, see :data:`SELF_JUDGED`) is judged by the model's sizes alone: its smallest over
    the median class's.

    Returns (relative ratio, its class, its kind, every ratio per kind). A model that is easier to trigger than
    the reference on every class (a reference trained on a few hundred images, an architecture that is brittle
    everywhere) has its ratios low together and its relative ratio near 1; a backdoor's target stands alone.
    """
    best: tuple[float, int, str] | None = None
    ratios: dict[str, list[float]] = {}
    for kind, sizes in model_sizes.items():
        ref = reference_sizes.get(kind, [1.0] * len(sizes))
        ratios[kind] = [float(m) / float(r) if r > 0 else math.inf for m, r in zip(sizes, ref, strict=True)]
        finite = [v for v in ratios[kind] if math.isfinite(v)]
        if not finite:
            continue
        median = statistics.median(finite)
        low = min(range(len(sizes)), key=ratios[kind].__getitem__)
        rel = ratios[kind][low] / median if median > 0 else math.inf
        if best is None or rel < best[0]:
            best = (rel, low, kind)
    if best is None:
        raise ValueError("no finite ratio: the reference's reversed triggers are all of size 0")
    return best[0], best[1], best[2], ratios


@dataclass(frozen=True)
class SuspectFinding:
    """The suspected class (None: no scan ran and no class was given), whether there is evidence of a backdoor,
    the reasons in words, every figure the scans produced (JSON-ready), and the reference model the vote trained
    (None for the other methods, or a finding read back from its record)."""

    target: int | None
    evidence: bool
    reasons: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    reference: nn.Module | None = field(default=None, repr=False, compare=False)


def corroborated(
    measure: float, chosen: int, sensitivity: dict[str, Any] | None, corroborated_cut: float | None
) -> bool:
    """Whether a relative measure above the cut is evidence all the same: at most ``corroborated_cut``, with the
    sensitivity scan's verdict "suspicious" and its class ``chosen``."""
    return (
        corroborated_cut is not None
        and measure <= corroborated_cut
        and sensitivity is not None
        and sensitivity["verdict"] == "suspicious"
        and int(sensitivity["suspected_target"]) == int(chosen)
    )


def _sensitivity(model: nn.Module, data: ArrayData, seed: int) -> dict[str, Any]:
    return sensitivity_record(scan_model(model, data, ScanConfig(seed=seed)))


def sensitivity_record(scan: ScanResult) -> dict[str, Any]:
    """The figures of a sensitivity scan the finder uses and records (JSON-ready)."""
    return {
        "score": scan.score,
        "suspected_target": scan.suspected_target,
        "verdict": scan.verdict,
        "threshold": scan.threshold,
        "target_share": scan.target_share,
        "seconds": scan.seconds,
    }


def find_suspect(
    model: nn.Module,
    data: ArrayData,
    *,
    method: str = "vote",
    target: int | None = None,
    reference_ratio: float = 0.41,
    rule: str = "ratio",
    relative_cut: float = 0.5,
    corroborated_cut: float | None = None,
    sensitivity_evidence: bool = True,
    build_reference: Callable[[], nn.Module] | None = None,
    batch_size: int = 128,
    seed: int = 0,
    sensitivity: dict[str, Any] | None = None,
    reversal: dict[str, Any] | None = None,
    kinds: tuple[str, ...] = TRIGGER_KINDS,
) -> SuspectFinding:
    """Run the scans of ``method`` on ``data`` (the defender's clean data; the model is not modified).

    Args:
        model: the model under suspicion.
        data: clean labelled images (the sensitivity scan also takes tabular data).
        method: ``none``, ``sensitivity``, ``reversal`` or ``vote`` (see the module docstring).
        target: a class named by the user: no scan runs, and it counts as evidence.
        reference_ratio: the ``ratio`` rule's cut on (trigger size on the model) / (size on the reference).
        rule: the ``vote``'s evidence rule: ``ratio`` (the suspect among the named classes, its ratio at most
            ``reference_ratio``) or ``relative`` (the reference reversed to every class; the smallest ratio over the
            median class's at most ``relative_cut``, :func:`relative_evidence`; its class is the suspect).
        relative_cut: the ``relative`` rule's cut.
        corroborated_cut: (``relative`` only) a measure above ``relative_cut`` but at most this is evidence when
            the sensitivity scan is "suspicious" and names the same class (None: no band; no effect under the
            ``ratio`` rule).
        sensitivity_evidence: a "suspicious" sensitivity scan is evidence by itself (else only a voice).
        build_reference: a fresh untrained model of the same architecture (``vote`` only).
        batch_size: the reversal's batch size.
        seed: seeds every scan and the reference's training.
        sensitivity: the sensitivity scan already run on ``data`` (a :class:`~pruneguard.scan.ScanResult`'s
            ``score``, ``suspected_target``, ``verdict``, ``threshold``): used instead of scanning again.
        reversal: :func:`~pruneguard.scan.reversal.reversal_scan`'s record on ``data`` with the scan's settings
            (:func:`~pruneguard.scan.reversal.scan_config`), used instead of reversing again.
        kinds: the trigger kinds the reversal scan reverses (``patch``, ``blend``, ``warp``).
    """
    if not kinds or set(kinds) - set(REVERSAL_KINDS):
        raise ConfigError(f"kinds={kinds!r} is not accepted; accepted: some of {', '.join(REVERSAL_KINDS)}")
    if method not in SUSPECT_METHODS:
        raise ConfigError(f"suspect.method={method!r} is not accepted; accepted: {', '.join(SUSPECT_METHODS)}")
    if rule not in EVIDENCE_RULES:
        raise ConfigError(f"suspect.evidence={rule!r} is not accepted; accepted: {', '.join(EVIDENCE_RULES)}")
    if target is not None:
        if not 0 <= target < data.num_classes:
            raise ConfigError(f"suspect.target={target} is outside [0, {data.num_classes - 1}]")
        return SuspectFinding(target, True, [f"class {target} was named by the user"], {"given": target})
    if method == "none":
        return SuspectFinding(None, False, ["no scan was asked for"], {})
    record: dict[str, Any] = {}
    if method in ("sensitivity", "vote"):
        record["sensitivity"] = sensitivity if sensitivity is not None else _sensitivity(model, data, seed)
    if method in ("reversal", "vote"):
        if data.x.dim() != 4:
            raise ConfigError(
                f"suspect.method={method} reverses an image trigger; data of shape "
                f"{tuple(data.x.shape)} has no images (use suspect.method=sensitivity)"
            )
        record["reversal"] = (
            reversal
            if reversal is not None
            else reversal_scan(model, data, scan_config(batch_size), kinds=kinds, seed=seed)
        )
    sens = record.get("sensitivity")
    reasons: list[str] = []
    evidence = False
    if sens is not None and sens["verdict"] == "suspicious" and sensitivity_evidence:
        evidence = True
        reasons.append(
            f"the neuron-sensitivity scan scored {sens['score']:.2f} (cut {sens['threshold']:.2f}), its errors "
            f"going to class {sens['suspected_target']}"
        )
    if method == "sensitivity":
        named = sens["suspected_target"] if sens else None
        return SuspectFinding(named, evidence, reasons or ["the neuron-sensitivity scan found nothing"], record)
    rev = record["reversal"]
    if method == "reversal":
        return SuspectFinding(
            int(rev["suspected_target"]),
            evidence,
            reasons or [f"the reversal scan's anomaly index is {rev['anomaly_index']:.2f}"],
            record,
        )
    if build_reference is None:
        raise ConfigError("suspect.method=vote needs build_reference (a fresh model of the same architecture)")
    candidates = vote_candidates(sens["suspected_target"] if sens else None, rev["kinds"])
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    reference = train_reference(build_reference, data, seed=seed, device=device)
    judged = candidates if rule == "ratio" else list(range(data.num_classes))
    ref_kinds = tuple(k for k in rev["kinds"] if k not in SELF_JUDGED)
    ref = reference_trigger_sizes(reference, data, judged, scan_config(batch_size), kinds=ref_kinds, seed=seed)
    suspect_sizes = {k: v["mask_l1"] for k, v in rev["kinds"].items()}
    if rule == "ratio":  # the stamps only: a warp has no reference size
        chosen, ratios = reference_suspect(candidates, {k: suspect_sizes[k] for k in ref_kinds}, ref["sizes"])
        decided_by = "reference" if len(candidates) > 1 else "unanimous"
        ratio = min(r[chosen] for r in ratios.values())
        kind = min(ratios, key=lambda k: ratios[k][chosen])
        measure, cut = ratio, reference_ratio
        said = f"{ratio:.2f} times the size of the same trigger on a reference model trained on the clean data alone"
    else:
        ref_lists = {k: [d[c] for c in judged] for k, d in ref["sizes"].items()}
        measure, chosen, kind, all_ratios = relative_evidence(suspect_sizes, ref_lists)
        ratios = {k: dict(enumerate(v)) for k, v in all_ratios.items()}
        decided_by = "relative"
        ratio = min((ratios[k][chosen] for k in ref_kinds), default=math.inf)
        cut = relative_cut
        said = (
            f"a warp of {all_ratios[kind][chosen] / data.x[0, 0].numel():.2f} pixels on average, {measure:.3g} times "
            "the median class's"
            if kind in SELF_JUDGED
            else f"{all_ratios[kind][chosen]:.2f} times the size of the same trigger ({kind}) on a reference model "
            f"trained on the clean data alone, {measure:.3g} times the median class's ratio"
        )
    record["vote"] = {
        "suspected_target": chosen,
        "decided_by": decided_by,
        "candidates": candidates,
        "rule": rule,
        "kind": kind,
        "reference": {
            "sizes": {k: {str(c): v for c, v in d.items()} for k, d in ref["sizes"].items()},
            "ratios": {k: {str(c): v for c, v in d.items()} for k, d in ratios.items()},
            "ratio_of_suspect": ratio,
            "measure": measure,
            "cut": cut,
            **({"corroborated_cut": corroborated_cut} if corroborated_cut is not None else {}),
            "seconds": time.perf_counter() - t0,
        },
    }
    if measure <= cut:
        evidence = True
        reasons.append(f"class {chosen}'s reversed trigger is {said} (cut {cut:.3g})")
    elif rule == "relative" and corroborated(measure, chosen, sens, corroborated_cut):
        assert sens is not None and corroborated_cut is not None
        evidence = True
        record["vote"]["corroborated"] = True
        reasons.append(
            f"class {chosen}'s reversed trigger is {said}, above the cut {cut:.3g} but within {corroborated_cut:.3g}"
            f", and the neuron-sensitivity scan, a test of another kind, names the same class (score "
            f"{sens['score']:.2f}, cut {sens['threshold']:.2f})"
        )
    if not evidence:
        voice = "" if sensitivity_evidence else " (a voice for the class, not evidence, in this recipe)"
        reasons.append(
            f"the most likely class, {chosen}, needs {'' if kind in SELF_JUDGED else 'a trigger '}{said} (cut "
            f"{cut:.3g}), and the neuron-sensitivity "
            f"scan scored {sens['score']:.2f} (cut {sens['threshold']:.2f}){voice}"
            if sens
            else f"class {chosen} is no outlier"
        )
    logger.info("suspect: class %s (%s), evidence %s", chosen, decided_by, evidence)
    return SuspectFinding(int(chosen), evidence, reasons, record, reference)


def recheck_suspect(
    repaired: nn.Module,
    original: nn.Module,
    data: ArrayData,
    target: int,
    *,
    reference: nn.Module | None = None,
    cut: float = 0.41,
    kinds: tuple[str, ...] = TRIGGER_KINDS,
    warp_cut: float | None = None,
    batch_size: int = 128,
    seed: int = 0,
) -> dict[str, Any]:
    """The finder's evidence tests re-run on a repaired model: is the suspect's shortcut still there?

    Each test runs on ``data`` (purify passes the validation part, which no step trained on) for the original and
    the repaired model, as the finder runs it (same settings and seed):

    - ``sensitivity``: the neuron-sensitivity scan calls the model suspicious with its errors going to ``target``;
    - ``reference`` (with a ``reference`` model): the trigger to ``target`` reversed on the model is at most
      ``cut`` times the one reversed on the reference (the smaller ratio over ``kinds``);
    - ``warp`` (with ``warp_cut``: where a warp decided the finder's evidence): the warp reversed to ``target`` is
      at most ``warp_cut`` times the median class's warp on the same model (a warp is judged against the model's
      own classes, :data:`SELF_JUDGED`: every class is reversed on both models).

    A test is ``judged`` when it flags the original on ``data`` (else it cannot tell a removed backdoor from one
    it does not see on these images); evidence remains when a judged test still flags the repaired model.
    JSON-ready.
    """
    t0 = time.perf_counter()
    tests: dict[str, dict[str, Any]] = {}
    try:
        tests["sensitivity"] = _recheck_sensitivity(repaired, original, data, target, seed)
    except ConfigError as exc:  # too few images or classes for the scan: the test cannot judge
        tests["sensitivity"] = {"judged": False, "evidence": False, "error": str(exc).splitlines()[0]}
    if reference is not None:
        try:
            tests["reference"] = _recheck_reference(
                repaired, original, reference, data, target, cut=cut, kinds=kinds, batch_size=batch_size, seed=seed
            )
        except ConfigError as exc:
            tests["reference"] = {"judged": False, "evidence": False, "error": str(exc).splitlines()[0]}
    if warp_cut is not None:
        try:
            tests["warp"] = _recheck_warp(
                repaired, original, data, target, cut=warp_cut, batch_size=batch_size, seed=seed
            )
        except ConfigError as exc:
            tests["warp"] = {"judged": False, "evidence": False, "error": str(exc).splitlines()[0]}
    out = {
        "target": target,
        "images": len(data),
        "tests": tests,
        "judged": any(t["judged"] for t in tests.values()),
        "evidence": any(t["evidence"] for t in tests.values()),
        "seconds": time.perf_counter() - t0,
    }
    logger.info("recheck of class %d: judged %s, evidence %s", target, out["judged"], out["evidence"])
    return out


def _recheck_sensitivity(
    repaired: nn.Module, original: nn.Module, data: ArrayData, target: int, seed: int
) -> dict[str, Any]:
    """The sensitivity test of :func:`recheck_suspect`: suspicious, with the errors going to ``target``."""
    scans = {name: _sensitivity(m, data, seed) for name, m in (("original", original), ("repaired", repaired))}

    def flags(scan: dict[str, Any]) -> bool:
        return scan["verdict"] == "suspicious" and scan["suspected_target"] == target

    judged = flags(scans["original"])
    return {
        **{name: {"score": v["score"], "suspected_target": v["suspected_target"]} for name, v in scans.items()},
        "cut": scans["original"]["threshold"],
        "judged": judged,
        "evidence": judged and flags(scans["repaired"]),
    }


def _recheck_reference(
    repaired: nn.Module,
    original: nn.Module,
    reference: nn.Module,
    data: ArrayData,
    target: int,
    *,
    cut: float,
    kinds: tuple[str, ...],
    batch_size: int,
    seed: int,
) -> dict[str, Any]:
    """The reference test of :func:`recheck_suspect`: the trigger to ``target`` at most ``cut`` times the
    reference's (the smaller ratio over ``kinds``)."""
    config = scan_config(batch_size)
    sizes: dict[str, dict[str, float]] = {}
    for name, m in (("original", original), ("repaired", repaired), ("reference", reference)):
        found = reference_trigger_sizes(m, data, [target], config, kinds=kinds, seed=seed)["sizes"]
        sizes[name] = {kind: found[kind][target] for kind in kinds}
    ratios = {
        name: {kind: sizes[name][kind] / max(sizes["reference"][kind], 1e-12) for kind in kinds}
        for name in ("original", "repaired")
    }
    before, after = min(ratios["original"].values()), min(ratios["repaired"].values())
    return {
        "sizes": sizes,
        "ratios": ratios,
        "original": before,
        "repaired": after,
        "cut": cut,
        "judged": before <= cut,
        "evidence": before <= cut and after <= cut,
    }


def _recheck_warp(
    repaired: nn.Module, original: nn.Module, data: ArrayData, target: int, *, cut: float, batch_size: int, seed: int
) -> dict[str, Any]:
    """The warp test of :func:`recheck_suspect`: the warp to ``target`` at most ``cut`` times the median class's
    warp on the same model."""
    config = scan_config(batch_size)
    sizes: dict[str, list[float]] = {}
    measure: dict[str, float] = {}
    for name, m in (("original", original), ("repaired", repaired)):
        sizes[name] = reversal_scan(m, data, config, kinds=("warp",), seed=seed)["kinds"]["warp"]["mask_l1"]
        median = statistics.median(sizes[name])
        measure[name] = sizes[name][target] / median if median > 0 else math.inf
    judged = measure["original"] <= cut
    return {
        "sizes": sizes,
        "original": measure["original"],
        "repaired": measure["repaired"],
        "cut": cut,
        "judged": judged,
        "evidence": judged and measure["repaired"] <= cut,
    }
