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


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.2f}%"


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


def _repair_note(rep: dict[str, Any] | None) -> str | None:
    if not rep:
        return None
    if rep["method"] == "finetune":
        return f"fine-tune, {rep['epochs']} epochs at lr {rep['lr']:g}"
    trig = "; ".join(
        f"round {t['round']} {t['kind']} → {t['target']}: mask {t['mask_share']:.4f}, success {t['success_rate']:.3f}"
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


def render_purify_html(report: dict[str, Any]) -> str:
    b, a, mid = report["before"], report["after"], report.get("after_pruning")
    verdict = report["verdict"]
    css = "fail" if verdict["status"] == "failed" else "pass"
    head = f"<p class='{css}' id='verdict'><b>{html.escape(verdict['sentence'])}</b></p>"
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
                "accuracy guard",
                None
                if not guard
                else f"floor {_pct(guard['floor'])} on validation; repair kept at scale {guard['scale']:g}",
            ],
            ["ONNX export", _onnx_note(report.get("onnx"))],
            ["seconds", report["seconds"]],
            ["seed", report["seed"]],
            ["git commit", report.get("git_commit")],
            ["started", report["started"]],
            ["finished", report["finished"]],
        ],
    )
    policy: list[str] = []
    if report.get("policy"):
        policy = ["<h2>Policy</h2>", policy_table_html(report["policy"]["rules"])]
    figures = (report.get("repair") or {}).get("figures_png") or []
    pictures = (
        [
            "<h2>Reversed triggers</h2>",
            *(img(f, "reversed trigger: mask, pattern and stamped clean images") for f in figures),
        ]
        if figures
        else []
    )
    sections = [head, "<h2>Result</h2>", summary, *policy, *pictures, "<h2>Details</h2>", facts, *_anp_sections(report)]
    sections.append(
        "<h2>Config and versions</h2><pre>"
        + html.escape(json.dumps({"config": report["config"], "versions": report["versions"]}, indent=2))
        + "</pre>"
    )
    return page("pruneguard purify report", sections)


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
    curve_png = line_plot(
        xs,
        series,
        xlabel="neurons pruned (smallest masks first)",
        ylabel="rate",
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
