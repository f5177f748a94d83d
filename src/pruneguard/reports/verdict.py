"""The one plain sentence that opens every purify report and terminal summary: what was found, what was done,
validation accuracy before/after (with how many validation predictions moved and the standard error of the drop
they measure) and, where a benchmark trigger is known, the attack success rate."""

from __future__ import annotations

from typing import Any

from pruneguard.reports.page import pct

__all__ = ["guard_is_blind", "model_changed", "purify_verdict", "NEAR_CUT"]

# The same evidence scans on the same images and seed differ by up to 0.10 (standard deviation 0.032) between a
# GPU and this project's CPU (benchmarks/results/evidence_eval4_cpu_gpu.json): a measure this close to its cut
# could have been decided the other way.
NEAR_CUT = 0.03


def _accuracy_clause(before: dict[str, Any], after: dict[str, Any], change: dict[str, Any] | None = None) -> str:
    if before.get("validation_accuracy") is not None:
        acc = f"validation accuracy {pct(before['validation_accuracy'])} → {pct(after['validation_accuracy'])}"
        if change and change["changed"]:
            acc += (
                f" ({change['changed']} of its {change['images']} predictions changed; standard error of the drop "
                f"{100 * change['drop_se']:.1f} points)"
            )
    else:
        acc = f"test accuracy {pct(before['accuracy'])} → {pct(after['accuracy'])} (no validation data held out)"
    if before.get("asr") is not None:
        acc += f"; benchmark ASR {pct(before['asr'])} → {pct(after['asr'])}"
    return acc


def _actions(report: dict[str, Any]) -> str:
    parts = []
    undone = report.get("pruning_undone")
    if undone:
        parts.append(
            f"undid ANP's pruning of {undone['pruned']} of {report['total_neurons']} neurons (the repair fitted the "
            "guard only without it)"
        )
    elif report.get("total_neurons"):
        parts.append(f"pruned {report['pruned_neurons']} of {report['total_neurons']} neurons")
    repair = report.get("repair")
    if repair:
        judged = (report.get("guard") or {}).get("rounds") or []  # a round run again at a lower rate: twice
        undone = {r["round"] for r in judged} - {r["round"] for r in judged if r["scale"] > 0}
        kept = [t for t in repair.get("triggers") or [] if t.get("round") not in undone]
        what = (
            f"unlearned {len(kept)} reversed trigger(s) towards class {repair['target']}"
            if repair["method"] == "unlearn"
            else f"fine-tuned {repair['epochs']} epochs"
        )
        guard = report.get("guard") or {}
        scale = guard.get("scale", 1.0)
        if len(repair.get("attempts") or []) > 1 and scale > 0:
            what += f" at a learning rate of {repair['lr']:.3g} (the guard refused the higher ones)"
        by = _guard_name(guard, _broken(guard, guard.get("tried")), repair)
        if scale == 0:
            what += f" (undone by {by})"
        elif guard.get("rounds"):
            what += _rounds_note(guard, repair)
        elif scale < 1:
            what += f" (scaled back to {scale:g} by {by})"
        parts.append(what)
    return " and ".join(parts) if parts else "changed nothing"


def _broken(guard: dict[str, Any], tried: list[dict[str, Any]] | None) -> tuple[bool, bool]:
    """Which of the guard's limits the full repair (``tried[0]``) broke: (accuracy, class). The accuracy when the
    record does not say."""
    first = (tried or [{}])[0]
    floor, min_kept = guard.get("floor"), guard.get("min_suspect_kept")
    kept = min_kept is not None and first.get("suspect_kept", 1.0) < min_kept - 1e-12
    accuracy = floor is None or "accuracy" not in first or first["accuracy"] < floor - 1e-12
    return accuracy or not kept, kept


def _guard_name(guard: dict[str, Any], broken: tuple[bool, bool], repair: dict[str, Any]) -> str:
    """The guard that held a repair back, in words: the accuracy guard, the class guard (the suspected class's
    validation images taken away from it) or both."""
    accuracy, kept = broken
    if not kept:
        return "the accuracy guard"
    name = "the accuracy and class guards" if accuracy else "the class guard"
    return (
        f"{name} (at least {pct(guard['min_suspect_kept'])} of the {guard.get('suspect_images', '?')} validation "
        f"images the original assigns to class {repair.get('target')} must stay there)"
    )


def _rounds_note(guard: dict[str, Any], repair: dict[str, Any]) -> str:
    """What a round-by-round guard did to the rounds it did not keep whole, e.g. " (round 3 undone by the
    accuracy guard)"; nothing when every round was kept."""
    held = [r for r in guard["rounds"] if r["scale"] < 1]
    if not held:
        return ""
    rates = [r["lr"] for r in guard["rounds"] if "lr" in r]
    at = (lambda r: f" at {r['lr']:.3g}") if len(set(rates)) > 1 else (lambda r: "")
    notes = [
        f"round {r['round']}{at(r)} " + ("undone" if r["scale"] == 0 else f"scaled back to {r['scale']:g}")
        for r in held
    ]
    broken = [_broken(guard, r.get("tried")) for r in held]
    union = (any(b[0] for b in broken), any(b[1] for b in broken))
    lowered = f"; the learning rate lowered to {min(rates):.3g}" if len(set(rates)) > 1 else ""
    return f" ({', '.join(notes)} by {_guard_name(guard, union, repair)}{lowered})"


def model_changed(report: dict[str, Any]) -> bool:
    """Whether a purify run's steps changed the model: neurons pruned, or some of the repair kept by the guard."""
    scale = (report.get("guard") or {}).get("scale", 1.0)
    return report.get("pruned_neurons", 0) > 0 or (report.get("repair") is not None and scale > 0)


def _recheck_clause(recheck: dict[str, Any], *, still: bool) -> str:
    """The recheck's judged tests in words (``still``: only those that still flag the purified model), e.g.
    "class 0's reversed trigger is 0.10 times the reference's (0.05 before, cut 0.41)"."""
    t, parts = recheck["target"], []
    for name, test in recheck["tests"].items():
        if not test["judged"] or (still and not test["evidence"]):
            continue
        if name == "warp":
            parts.append(
                f"class {t}'s reversed warp is {test['repaired']:.2f} times the median class's "
                f"({test['original']:.2f} before, cut {test['cut']:.2f})"
            )
        elif name == "reference":
            parts.append(
                f"class {t}'s reversed trigger is {test['repaired']:.2f} times the reference's "
                f"({test['original']:.2f} before, cut {test['cut']:.2f})"
            )
        else:
            after = test["repaired"]
            goes = (
                f"its errors going to class {after['suspected_target']}"
                if after["suspected_target"] is not None
                else "no errors"
            )
            parts.append(
                f"the neuron-sensitivity scan scores {after['score']:.2f}, {goes} "
                f"({test['original']['score']:.2f} before, cut {test['cut']:.2f})"
            )
    return f"{' and '.join(parts)} on {recheck['images']} held-out images"


def purify_verdict(report: dict[str, Any], max_acc_drop: float | None, require_evidence: bool) -> dict[str, Any]:
    """``status`` (``purified``, ``unchanged`` or ``failed``), the ``sentence``, and the CLI ``exit_code`` (3 for a
    failed verdict). Failed: the validation accuracy fell more than ``max_acc_drop``, or a backdoor was suspected
    with evidence but every change had to be undone to keep the accuracy. A purified model's sentence ends with
    the ``recheck`` (the finder's evidence tests re-run on it), as a caution when a test still flags it: how often
    such a flag means a backdoor that survived is measured in BENCHMARKS.md, so it informs and does not fail."""
    before, after, suspect = report["before"], report["after"], report["suspect"]
    evidence = "; ".join(suspect["reasons"])
    acc = _accuracy_clause(before, after, report.get("validation_change"))
    if require_evidence and not suspect["evidence"]:
        sentence = f"No evidence of a backdoor ({evidence}): the model is returned unchanged; {acc}.{_near_cut(report)}"
        return {"status": "unchanged", "sentence": sentence, "exit_code": 0}
    if report.get("blind_guard_refused"):
        n = report["validation_samples"]
        found = f"class {suspect['target']} suspected ({evidence})" if suspect["target"] is not None else "a repair"
        sentence = (
            f"FAILED: {found}, but {_too_few(n, max_acc_drop or 0.0)}, so no repair could be held to the limit: "
            "the model is returned unchanged. Give more clean data, or set unguarded_repair: true to repair anyway "
            "and measure the result on data of your own."
        )
        return {"status": "failed", "sentence": sentence, "exit_code": 3}
    drop = report.get("validation_drop")
    changed = model_changed(report)
    if suspect["target"] is None:
        found = f"recipe {report.get('recipe')} ran without a scan"
    elif suspect["evidence"]:
        found = f"class {suspect['target']} suspected ({evidence})"
    else:
        found = f"class {suspect['target']} purified without evidence of a backdoor ({evidence})"
    if max_acc_drop is not None and drop is not None and drop > max_acc_drop + 1e-12:
        sentence = (
            f"FAILED: {found}; {_actions(report)}, but the validation accuracy fell {100 * drop:.1f} points "
            f"(limit {100 * max_acc_drop:.1f}); {acc}."
        )
        return {"status": "failed", "sentence": sentence, "exit_code": 3}
    if suspect["evidence"] and report.get("steps") and not changed:
        guard = report.get("guard") or {}
        broken = _broken(guard, ((guard.get("rounds") or [guard])[0]).get("tried"))
        limit = (
            f"the limits of {_guard_name(guard, broken, report.get('repair') or {})}"
            if broken[1]
            else f"the accuracy limit ({100 * (max_acc_drop or 0):.1f} points)"
        )
        sentence = f"FAILED: {found}, but every change broke {limit} and was undone: the model is unchanged; {acc}."
        return {"status": "failed", "sentence": sentence, "exit_code": 3}
    if not changed:
        sentence = f"Unchanged: {found}; the recipe {report.get('recipe', '')!s} {_actions(report)}; {acc}."
        return {"status": "unchanged", "sentence": sentence, "exit_code": 0}
    recheck, checked = report.get("recheck"), ""
    if recheck is not None and recheck["evidence"]:
        checked = (
            " Caution: the backdoor may still be there; rechecked on the purified model, "
            f"{_recheck_clause(recheck, still=True)}."
        )
    elif recheck is not None and recheck["judged"]:
        checked = f" Rechecked on the purified model: {_recheck_clause(recheck, still=False)}."
    elif recheck is not None:
        checked = (
            f" The recheck cannot judge the result: on its {recheck['images']} held-out images no evidence test "
            "flags the original model."
        )
    opening = "Purified, with a caution" if recheck is not None and recheck["evidence"] else "Purified"
    sentence = (
        f"{opening}: {found}; {_actions(report)}; {acc}.{checked}{_near_cut(report)}"
        f"{_blind_guard(report, max_acc_drop)}"
    )
    return {"status": "purified", "sentence": sentence, "exit_code": 0}


def guard_is_blind(max_acc_drop: float | None, validation_samples: int) -> bool:
    """Whether one image of a validation part of ``validation_samples`` weighs more than ``max_acc_drop``, so
    that a drop past the limit can read as no drop at all (False without a guard or without validation data)."""
    return max_acc_drop is not None and validation_samples > 0 and 1.0 / validation_samples > max_acc_drop


def _blind_guard(report: dict[str, Any], max_acc_drop: float | None) -> str:
    """A caution when the validation part is too small for the guard to hold its limit (:func:`guard_is_blind`)."""
    n = report.get("validation_samples") or 0
    if max_acc_drop is None or not guard_is_blind(max_acc_drop, n):
        return ""
    return (
        f" Caution: {_too_few(n, max_acc_drop)}, so the accuracy guard cannot hold its limit: measure the "
        "purified model on data of your own before using it."
    )


def _too_few(n: int, max_acc_drop: float) -> str:
    """How a validation part of ``n`` images falls short of the limit, as both blind-guard sentences say it."""
    return (
        f"the validation part has {n} images (one image is {100 / n:.1f} points, more than the "
        f"{100 * max_acc_drop:.1f}-point limit)"
    )


def _near_cut(report: dict[str, Any]) -> str:
    """A caution when the finder's evidence measure lies within :data:`NEAR_CUT` of its cut, or of the edge of the
    band above it where the sensitivity scan names the same class (that edge decides only then): the decision to
    purify (or not) rests on a margin smaller than the scans' own run-to-run spread."""
    vote = report.get("vote") or {}
    ref = vote.get("reference") or {}
    measure, cut = ref.get("measure"), ref.get("cut")
    if measure is None or cut is None:
        return ""
    edges = {cut: f"its cut ({cut:.3g})"}
    band, scan = ref.get("corroborated_cut"), report.get("scan") or {}
    if (
        band is not None
        and scan.get("verdict") == "suspicious"
        and scan.get("suspected_target") == vote.get("suspected_target")
    ):
        edges[band] = f"the edge of the band ({band:.3g}) where the sensitivity scan naming the same class counts"
    edge = min(edges, key=lambda e: abs(measure - e))
    if abs(measure - edge) >= NEAR_CUT:
        return ""
    return (
        f" Caution: the evidence measure ({measure:.3f}) is within {NEAR_CUT} of {edges[edge]}, less than "
        "the same scans differ between devices: on another device or run the decision may differ."
    )
