"""HTML renderer of a scan report: it only formats the report dict, it never computes results."""

from __future__ import annotations

import html
import json
from typing import Any

from pruneguard.policy import policy_table_html
from pruneguard.reports.html import img, page, table
from pruneguard.reports.plots import line_plot

__all__ = ["render_scan_html"]


def _verdict(report: dict[str, Any]) -> str:
    cls = "fail" if report["verdict"] == "suspicious" else "pass"
    target = report["suspected_target"]
    name = report.get("suspected_target_name")
    label = "–" if target is None else f"{target}" + (f" ({name})" if name and name != str(target) else "")
    return (
        f"<p>Verdict: <strong class='{cls}'>{html.escape(report['verdict'])}</strong> — score "
        f"{report['score']:.4f} against threshold {report['threshold']:.4f}; suspected target class "
        f"{html.escape(label)} ({report['target_share']:.0%} of the errors under perturbation).</p>"
        "<p>The score is the concentration of the perturbed model's errors on one class (pooled over budgets and "
        "restarts): a backdoored model's errors pile onto its target class, a benign model's spread out.</p>"
    )


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
            ["seconds", report["seconds"]],
            ["seed", report["seed"]],
            ["git commit", report.get("git_commit")],
            ["started", report["started"]],
            ["finished", report["finished"]],
        ],
    )
    sections = ["<h2>Result</h2>", _verdict(report), facts]
    if report.get("policy"):
        pol = report["policy"]
        state = "<strong class='pass'>passed</strong>" if pol["passed"] else "<strong class='fail'>failed</strong>"
        sections += [
            f"<h2>Policy</h2><p>{html.escape(str(pol.get('file')))}: {state}</p>",
            policy_table_html(pol["rules"]),
        ]
    sections += [
        "<h2>Sensitivity curve</h2>",
        img(curve_png, "sensitivity curve"),
        per_eps,
        "<h2>Errors by predicted class (all budgets and restarts)</h2>",
        by_class,
        "<h2>Config and versions</h2>",
        "<pre>"
        + html.escape(
            json.dumps({"scan": report["scan"], "config": report["config"], "versions": report["versions"]}, indent=2)
        )
        + "</pre>",
    ]
    return page("pruneguard scan report", sections)
