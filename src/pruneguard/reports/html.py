"""HTML renderer of a purify report: it only formats the report dict, it never computes results."""

from __future__ import annotations

from typing import Any

from pruneguard.reports.page import config_section, img, pct, policy_section, report_page, run_rows, table
from pruneguard.reports.plots import histogram, line_plot

__all__ = ["render_purify_html"]


def _pct(v: Any) -> str:
    return pct(v, 2)


def _reference_note(vote: dict[str, Any] | None) -> str:
    """The reference check's ratios (suspect / reference trigger size, the smaller per class)."""
    if not vote or not vote.get("reference"):
        return ""
    ratios = vote["reference"]["ratios"]
    best = {c: min(r[c] for r in ratios.values()) for c in next(iter(ratios.values()))}
    return "; reference model: " + ", ".join(f"class {c} ratio {v:.2f}" for c, v in best.items())


def _suspect_rows(report: dict[str, Any]) -> list[list[Any]]:
    scan, rev, vote = report.get("scan"), report.get("reversal_scan"), report.get("vote")
    return [
        ["suspected class", report["suspect"]["target"]],
        ["evidence of a backdoor", "yes" if report["suspect"]["evidence"] else "no"],
        [
            "neuron-sensitivity scan (class, score / cut, verdict)",
            None if not scan else "{suspected_target}, {score:.3f} / {threshold:.2f}, {verdict}".format(**scan),
        ],
        [
            "trigger reversal (per kind: class, anomaly index)",
            None
            if not rev
            else "; ".join(
                f"{k}: {v['suspected_target']}, {v['anomaly_index']:.2f}" for k, v in rev.get("kinds", {}).items()
            ),
        ],
        [
            "vote",
            None
            if not vote
            else f"class {vote['suspected_target']} (decided by {vote['decided_by']})" + _reference_note(vote),
        ],
    ]


def _trigger_size(t: dict[str, Any]) -> str:
    """A reversed trigger's size in words: a warp's mean displacement, a stamp's mask share."""
    if t["kind"] == "warp":
        return f"mean displacement {t['mask_share']:.3f} px"
    return f"mask {t['mask_share']:.4f}"


def _repair_note(rep: dict[str, Any] | None) -> str | None:
    if not rep:
        return None
    if rep["method"] == "finetune":
        return f"fine-tune, {rep['epochs']} epochs at lr {rep['lr']:g}"
    trig = "; ".join(
        f"round {t['round']} {t['kind']} → {t['target']}: {_trigger_size(t)}, success {t['success_rate']:.3f}"
        for t in rep["triggers"]
    )
    text = f"unlearning, {rep['rounds']} round(s) × {rep['epochs']} epochs: {trig}"
    if rep.get("distill"):
        text += f"; distilling the {rep.get('teacher')} pruned model, weight {rep['distill']:g}"
        if rep.get("suppress"):
            text += f", {rep['suppress']:.0%} of its suspected-class probability taken out"
    if rep.get("adv_eps"):
        text += f"; targeted PGD copies, eps {rep['adv_eps']:g}"
    return text


def _onnx_note(section: dict[str, Any] | None) -> str | None:
    if not section:
        return None
    return (
        f"{section['file']}: onnxruntime logits within {section['max_abs_diff']:.1e} of PyTorch, argmax agreement "
        f"{_pct(section['argmax_agreement'])} on {section['inputs']}"
    )


def _round_note(judged: dict[str, Any]) -> str:
    """One judged round of the repair: its scale, and the learning rate where the record has one."""
    return f"{judged['scale']:g}" + (f" (round {judged['round']}, lr {judged['lr']:.3g})" if "lr" in judged else "")


def render_purify_html(report: dict[str, Any]) -> str:
    b, a, mid = report["before"], report["after"], report.get("after_pruning")
    verdict = report["verdict"]
    summary = table(
        ["", "validation accuracy", "test accuracy", "ASR (benchmark trigger)"],
        [
            ["before", _pct(b.get("validation_accuracy")), _pct(b["accuracy"]), _pct(b.get("asr"))],
            *(
                [
                    [
                        "after pruning only",
                        _pct(mid.get("validation_accuracy")),
                        _pct(mid["accuracy"]),
                        _pct(mid.get("asr")),
                    ]
                ]
                if mid
                else []
            ),
            ["after", _pct(a.get("validation_accuracy")), _pct(a["accuracy"]), _pct(a.get("asr"))],
        ],
    )
    guard = report.get("guard")
    facts = table(
        ["fact", "value"],
        [
            ["recipe", report["recipe"]],
            ["model", report["model"]],
            ["model SHA-256", report["model_sha256"]],
            ["dataset", report["dataset"]],
            ["clean samples (used / validation)", f"{report['used_samples']} / {report['validation_samples']}"],
            ["clean data", report["clean_source"]],
            ["clean indices SHA-256", report["clean_indices_hash"]],
            *_suspect_rows(report),
            ["steps run", ", ".join(report.get("steps") or []) or "none"],
            ["pruning rule", report.get("pruning_rule")],
            ["pruned / total neurons", f"{report['pruned_neurons']} / {report.get('total_neurons') or '–'}"],
            ["repair", _repair_note(report.get("repair"))],
            [
                "guard",
                None
                if not guard
                else f"floor {_pct(guard['floor'])} on validation; "
                + (
                    f"at least {_pct(guard['min_suspect_kept'])} of the {guard.get('suspect_images', '?')} validation "
                    "images the original assigns to the suspected class kept in it; "
                    if guard.get("min_suspect_kept") is not None
                    else ""
                )
                + (
                    "rounds kept at scales " + ", ".join(_round_note(r) for r in guard["rounds"])
                    if guard.get("rounds")
                    else f"repair kept at scale {guard['scale']:g}"
                ),
            ],
            ["backdoor recheck", _recheck_note(report.get("recheck"))],
            ["ONNX export", _onnx_note(report.get("onnx"))],
            *run_rows(report),
        ],
    )
    figures = (report.get("repair") or {}).get("figures_png") or []
    pictures = (
        [
            "<h2>Reversed triggers</h2>",
            *(img(f, "reversed trigger: mask, pattern and stamped clean images") for f in figures),
        ]
        if figures
        else []
    )
    details = [
        *policy_section(report.get("policy")),
        *pictures,
        "<h2>Details</h2>",
        facts,
        *_anp_sections(report),
        config_section({"config": report["config"], "versions": report["versions"]}),
    ]
    return report_page(
        "pruneguard purify report",
        verdict["sentence"],
        status="fail" if verdict["status"] == "failed" else "pass",
        key_figures=["<h2>Result</h2>", summary],
        details=details,
    )


def _recheck_note(recheck: dict[str, Any] | None) -> str | None:
    """The finder's evidence tests re-run on the purified model: each test's figure before → after."""
    if not recheck:
        return None
    parts = []
    for name, t in recheck["tests"].items():
        if "error" in t:
            parts.append(f"{name} test not run: {t['error']}")
            continue
        scored = name == "sensitivity"
        before, after = (t["original"]["score"], t["repaired"]["score"]) if scored else (t["original"], t["repaired"])
        state = "still flags" if t["evidence"] else ("passes" if t["judged"] else "did not flag the original")
        label = {"reference": "trigger size / reference's", "warp": "warp / median class's"}.get(
            name, "sensitivity score"
        )
        parts.append(f"{label} {before:.2f} → {after:.2f} (cut {t['cut']:.2f}): {state}")
    return f"class {recheck['target']}, {recheck['images']} images ({recheck['data']}): " + "; ".join(parts)


def _anp_sections(report: dict[str, Any]) -> list[str]:
    """The pruning curve, the mask histogram and the per-layer table (only when ANP ran)."""
    curve = report.get("curve")
    if not curve:
        return []
    xs = [row["pruned"] for row in curve]
    series: dict[str, list[float | None]] = {
        f"accuracy ({report.get('curve_data', 'validation')})": [row["clean_accuracy"] for row in curve]
    }
    if any("asr" in row for row in curve):
        series["ASR (test, benchmark only)"] = [row.get("asr") for row in curve]
    if any("kl" in row for row in curve):
        series["divergence from the original (mean KL, nats)"] = [row.get("kl") for row in curve]
    curve_png = line_plot(
        xs,
        series,
        xlabel="neurons pruned (smallest masks first)",
        ylabel="rate (KL: nats)",
        title="Pruning curve",
        vline=report["pruned_neurons"],
        vlabel="chosen",
    )
    hist_png = histogram(
        [m["mask"] for m in report["masks"]],
        bins=40,
        xlabel="ANP mask value",
        title="Mask values",
        vline=report["threshold_reached"] if report["pruned_neurons"] else None,
    )
    layers = table(
        ["layer", "kind", "neurons", "pruned", "mean mask"],
        [[r["layer"], r["kind"], r["neurons"], r["pruned"], r["mask_mean"]] for r in report["layers"]],
    )
    return [
        "<h2>Pruning curve</h2>",
        img(curve_png, "pruning curve"),
        "<h2>Mask histogram</h2>",
        img(hist_png, "mask histogram"),
        "<h2>Layers</h2>",
        layers,
    ]
