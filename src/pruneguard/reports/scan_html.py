"""HTML renderer of a scan report: it only formats the report dict, it never computes results."""

from __future__ import annotations

from html import escape
from typing import Any

from pruneguard.reports.page import (
    config_section,
    figures_table,
    img,
    pct,
    policy_section,
    report_page,
    run_rows,
    table,
)
from pruneguard.reports.plots import line_plot

__all__ = ["render_scan_html"]


def _key_figures(report: dict[str, Any]) -> str:
    """The figures under the verdict, as percentages."""
    target = report["suspected_target"]
    figures = [
        [
            f"{r['detector']}: score as a share of its cut (class {r['class']}; "
            + ("at or under 100% flags)" if r.get("lower_flags") else "over 100% flags)"),
            pct(r.get("score_over_cut")),
        ]
        for r in report.get("evidence", [])
    ]
    figures += [
        [f"perturbed errors that land on class {'–' if target is None else target}", pct(report["target_share"])],
        ["clean-split accuracy", pct(report["clean_split_accuracy"])],
    ]
    rev = report.get("reversal")
    if rev is not None:
        trig = rev["trigger"]
        size = (
            [f"reversed warp to class {trig['target']}: mean displacement (pixels)", f"{trig['mask_share']:.3f}"]
            if trig["kind"] == "warp"
            else [
                f"reversed trigger to class {trig['target']}: pixels it covers (mask L1 / pixels)",
                pct(trig["mask_share"]),
            ]
        )
        figures += [
            size,
            [f"clean images of other classes it sends to class {trig['target']}", pct(trig["success_rate"])],
        ]
    return figures_table(figures)


def _evidence(report: dict[str, Any]) -> str:
    rows = [
        [
            r["detector"],
            r["measure"],
            r["class"],
            r["score"],
            r["cut"],
            pct(r.get("score_over_cut")),
            ("yes" if r["flagged"] else "no") + ("" if r.get("decides", True) else " (recorded, does not decide)"),
        ]
        for r in report.get("evidence", [])
    ]
    return table(["detector", "measure", "class", "score", "cut", "score / cut", "flags the model"], rows)


def _reversal(report: dict[str, Any]) -> list[str]:
    rev = report.get("reversal")
    if rev is None:
        return []
    kinds = rev["kinds"]
    rows = [[k, v["suspected_target"], v["anomaly_index"], min(v["mask_l1"])] for k, v in kinds.items()]
    return [
        "<h2>Reversed trigger</h2>",
        "<p>Neural Cleanse's detector: a trigger (mask and pattern) is reversed to every class on the clean split; "
        "a class reached with a much smaller trigger than the others stands out (anomaly index above the cut).</p>",
        img(rev["figure_png"], "reversed trigger: mask, pattern and stamped clean images"),
        table(["trigger kind", "smallest class", "anomaly index", "smallest mask L1"], rows),
    ]


def _finder(report: dict[str, Any]) -> list[str]:
    finder = report.get("finder")
    if finder is None:
        return []
    if "skipped" in finder:
        return ["<h2>Suspect finder</h2>", f"<p>Not run: {escape(finder['skipped'])}.</p>"]
    ratios = finder["reference"]["ratios"]
    rows = [[c, *(ratios[k][str(c)] for k in ratios)] for c in finder["candidates"]]
    return [
        "<h2>Suspect finder</h2>",
        "<p>The classes the scans name are judged against a model trained on the clean split alone: a backdoor's "
        "target needs a much smaller trigger on the suspect model than on that reference. "
        + escape(" ".join(finder["reasons"]))
        + "</p>",
        img(finder["figure_png"], f"trigger reversed to class {finder['suspected_target']}: mask, pattern, stamped"),
        table(["candidate class", *(f"{k}: model / reference" for k in ratios)], rows),
    ]


def render_scan_html(report: dict[str, Any]) -> str:
    curve = report["curve"]
    eps = [row["eps"] for row in curve]
    curve_png = line_plot(
        eps,
        {
            "error rate": [row["error_rate"] for row in curve],
            "top-class share of errors": [row["top_share"] for row in curve],
            "flip = error rate x top share": [row["flip"] for row in curve],
        },
        xlabel="neuron perturbation budget eps",
        ylabel="rate",
        title="Neuron sensitivity",
    )
    rows = [
        [row["eps"], row["error_rate"], row["error_rate_max"], row["top_class"], row["top_share"], row["flip"]]
        for row in curve
    ]
    per_eps = table(["eps", "error rate", "worst restart", "top class", "top share", "flip"], rows)
    totals = report["errors_by_class"]
    total = sum(totals) or 1
    by_class = table(["class", "errors", "share"], [[c, n, n / total] for c, n in enumerate(totals)])
    facts = table(
        ["fact", "value"],
        [
            ["model", report["model"]],
            ["model SHA-256", report["model_sha256"]],
            ["dataset", report["dataset"]],
            ["clean samples", report["clean_samples"]],
            ["clean split", report["clean_source"]],
            ["clean indices SHA-256", report["clean_indices_hash"]],
            ["clean-split accuracy", report["clean_split_accuracy"]],
            ["error rate, unperturbed (batch statistics)", report["baseline_error_rate"]],
            ["neurons perturbed", report["neurons"]],
            *run_rows(report),
        ],
    )
    sections = [
        "<h2>Evidence</h2>",
        _evidence(report),
        *_finder(report),
        *_reversal(report),
        "<h2>Result</h2>",
        "<p>The neuron-sensitivity score is the concentration of the perturbed model's errors on one class (pooled "
        "over budgets and restarts): a backdoored model's errors pile onto its target class, a benign model's "
        "spread out.</p>",
        facts,
    ]
    sections += [
        *policy_section(report.get("policy")),
        "<h2>Sensitivity curve</h2>",
        img(curve_png, "sensitivity curve"),
        per_eps,
        "<h2>Errors by predicted class (all budgets and restarts)</h2>",
        by_class,
        config_section({"scan": report["scan"], "config": report["config"], "versions": report["versions"]}),
    ]
    return report_page(
        "pruneguard scan report",
        report.get("verdict_sentence") or f"Verdict: {report['verdict']}.",
        status="fail" if report["verdict"] == "suspicious" else "pass",
        key_figures=[_key_figures(report)],
        details=sections,
    )
