"""HTML renderers: they only format a report dict, they never compute results."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from pruneguard.policy import policy_table_html
from pruneguard.reports.plots import histogram, line_plot

__all__ = ["render_purify_html", "page", "table", "fmt"]

_CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.pass{color:#1a7f37}.fail{color:#cf222e}
img{max-width:100%}pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:12px}"""


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, sections: Sequence[str]) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>\n"
    )


def img(b64: str, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"


def _reference_note(vote: dict[str, Any] | None) -> str:
    """The reference tie-break's ratios (suspect / reference trigger size, the smaller per class), if it ran."""
    if not vote or not vote.get("reference"):
        return ""
    ratios = vote["reference"]["ratios"]
    best = {c: min(r[c] for r in ratios.values()) for c in next(iter(ratios.values()))}
    return "; no majority, so a reference model trained on the clean split judged: " + ", ".join(
        f"class {c} ratio {v:.2f}" for c, v in best.items()
    )


def render_purify_html(report: dict[str, Any]) -> str:
    b, a, mid = report["before"], report["after"], report.get("after_pruning")
    summary = table(
        ["", "test accuracy", "ASR", "clean-split accuracy"],
        [
            ["before", b["accuracy"], b.get("asr"), b.get("clean_split_accuracy")],
            *([["after pruning only", mid["accuracy"], mid.get("asr"), None]] if mid else []),
            ["after", a["accuracy"], a.get("asr"), a.get("clean_split_accuracy")],
        ],
    )
    unl = report.get("unlearn")
    facts = table(
        ["fact", "value"],
        [
            ["model", report["model"]],
            ["model SHA-256", report["model_sha256"]],
            ["dataset", report["dataset"]],
            ["clean samples", report["clean_samples"]],
            ["clean split", report["clean_source"]],
            ["clean indices SHA-256", report["clean_indices_hash"]],
            ["pruning rule", report["pruning_rule"]],
            [
                "ANP perturbation",
                "untargeted"
                if report["anp"].get("target_class") is None
                else f"targeted at class {report['anp']['target_class']}",
            ],
            [
                "scan (suspected target, score, verdict)",
                None
                if not report.get("scan")
                else "{suspected_target}, {score:.3f}, {verdict}".format(**report["scan"]),
            ],
            [
                "reversal scan (suspected target, anomaly index)",
                None
                if not report.get("reversal_scan")
                else "{suspected_target}, {anomaly_index:.2f}".format(**report["reversal_scan"])
                + (
                    "; combined with the sensitivity scan: {suspected_target} (decided by {decided_by})".format(
                        **report["reversal_scan"]["combined"]
                    )
                    if report["reversal_scan"].get("combined")
                    else ""
                )
                + (
                    "; voted with the sensitivity scan: {suspected_target} (decided by {decided_by})".format(
                        **report["reversal_scan"]["vote"]
                    )
                    if report["reversal_scan"].get("vote")
                    else ""
                )
                + _reference_note(report["reversal_scan"].get("vote")),
            ],
            ["pruned / total neurons", f"{report['pruned_neurons']} / {report['total_neurons']}"],
            [
                "unlearning (reversed triggers: round, kind, class, mask share, success; epochs per round)",
                None
                if not unl
                else "; ".join(
                    f"{t.get('round', 1)}, {t.get('kind', 'patch')}, {t['target']}, {t['mask_share']:.4f}, "
                    f"{t['success_rate']:.3f}"
                    for t in unl.get("triggers", [unl["trigger"]])
                )
                + f"; {unl['epochs']} epochs × {unl.get('rounds', 1)} round(s)"
                + (
                    f"; distilling the pruned model"
                    f"{' (BatchNorm recalibrated)' if unl.get('teacher') == 'recalibrated' else ''}, "
                    f"weight {unl['distill']:g}"
                    + (
                        f", {unl['distill_suppress']:.0%} of its suspected-class probability taken out"
                        if unl.get("distill_suppress")
                        else ""
                    )
                    if unl.get("distill")
                    else ""
                )
                + (
                    f"; targeted PGD copies towards the target, eps {unl['adv_eps']:g}, {unl['adv_steps']} steps"
                    if unl.get("adv_eps")
                    else ""
                ),
            ],
            ["mask threshold reached", report["threshold_reached"]],
            ["seconds", report["seconds"]],
            ["seed", report["seed"]],
            ["git commit", report.get("git_commit")],
            ["started", report["started"]],
            ["finished", report["finished"]],
        ],
    )
    curve = report["curve"]
    xs = [row["pruned"] for row in curve]
    series: dict[str, list[float | None]] = {"clean-split accuracy": [row["clean_accuracy"] for row in curve]}
    if any("asr" in row for row in curve):
        series["ASR (test, benchmark only)"] = [row.get("asr") for row in curve]
    curve_png = line_plot(
        xs,
        series,
        xlabel="neurons pruned (smallest masks first)",
        ylabel="rate",
        title="Pruning curve",
        vline=report["pruned_neurons"],
        vlabel="chosen",
    )
    masks = [m["mask"] for m in report["masks"]]
    hist_png = histogram(
        masks,
        bins=40,
        xlabel="ANP mask value",
        title="Mask values",
        vline=report["threshold_reached"] if report["pruned_neurons"] else None,
    )
    layers = table(
        ["layer", "kind", "neurons", "pruned", "mean mask"],
        [[r["layer"], r["kind"], r["neurons"], r["pruned"], r["mask_mean"]] for r in report["layers"]],
    )
    verdict: list[str] = []
    if report.get("policy"):
        verdict = ["<h2>Policy</h2>", policy_table_html(report["policy"]["rules"])]
    sections = [
        "<h2>Result</h2>",
        summary,
        *verdict,
        facts,
        "<h2>Pruning curve</h2>",
        img(curve_png, "pruning curve"),
        "<h2>Mask histogram</h2>",
        img(hist_png, "mask histogram"),
        "<h2>Layers</h2>",
        layers,
        "<h2>Config and versions</h2>",
        f"<pre>{html.escape(json.dumps({'config': report['config'], 'versions': report['versions']}, indent=2))}</pre>",
    ]
    return page("pruneguard purify report", sections)
