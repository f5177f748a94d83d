"""HTML renderer of a harden report: it only formats the report dict, it never computes results."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

from pruneguard.reports.page import (
    config_section,
    flags_table,
    img,
    pct,
    policy_section,
    report_page,
    run_rows,
    table,
)
from pruneguard.reports.plots import line_plot

__all__ = ["render_harden_html"]

_STAGE_HEADERS = [
    "stage",
    "sparsity",
    "params",
    "non-zero",
    "latency (ms)",
    "clean",
    "FGSM",
    "PGD",
    "Square",
    "transfer (PGD)",
    "flags",
    "note",
]


def _stages(report: dict[str, Any]) -> str:
    rows = [
        [
            s["stage"],
            s["sparsity"],
            s["params"],
            s["nonzero_params"],
            s["latency_ms"],
            s["clean"],
            s["fgsm"],
            s["pgd"],
            s["square"],
            s["transfer_pgd"],
            ", ".join(s["flags"]) or "none",
            s["note"],
        ]
        for s in report["stages"]
    ]
    return table(_STAGE_HEADERS, rows)


_POSITIVE_HEADERS = ["stage", "precision", "recall", "F1", "PR-AUC", "ROC-AUC", "recall @ FPR", "robust recall @ FPR"]


def _positive(report: dict[str, Any]) -> list[str]:
    """The rare class's own table and the evasion threat model it was attacked under."""
    pc = report.get("positive_class")
    if not pc:
        return []
    keys = ("precision", "recall", "f1", "pr_auc", "roc_auc", "recall_at_fpr", "robust_recall_at_fpr")
    rows = [[name, *(s.get(k) for k in keys)] for name, s in pc["stages"].items()]
    tm = pc["threat_model"]
    facts = [
        ["positive class", f"{pc['positive_label']} ({pc['n_positive_test']} of {pc['n_test']} test rows)"],
        ["attacker", tm["attacker"]],
        ["untouched", tm["untouched"]],
        ["budget", f"{tm['eps_units']}: eps={tm['eps']:g}, {tm['steps']} steps"],
        ["constraints", json.dumps(tm["constraints"])],
        ["operating point", tm["operating_point"]],
    ]
    title = f"<h2>Positive class {html.escape(pc['positive_label'])!s} (FPR {pc['fpr']:g})</h2>"
    return [title, table(_POSITIVE_HEADERS, rows), table(["threat model", ""], facts)]


def _attacks(ev: dict[str, Any]) -> str:
    rows = [
        [name, a["robust_accuracy"], a["success_rate"], a["mean_perturbation"], a["seconds"]]
        for name, a in ev["attacks"].items()
    ]
    return table(["attack", "robust accuracy", "success rate", "mean perturbation", "seconds"], rows)


def _iterations(report: dict[str, Any]) -> str:
    rows = [
        [
            r["step"],
            r["sparsity"],
            r["achieved_sparsity"],
            r["metrics"].get("clean_accuracy"),
            r["metrics"].get("pgd_accuracy"),
            "yes" if r["collapsed"] else "no",
            r["reason"],
        ]
        for r in report["iterations"]
    ]
    return table(
        ["step", "target", "achieved", "clean (defender split)", "PGD (defender split)", "collapsed", "why"], rows
    )


def _sensitivity(report: dict[str, Any]) -> str:
    evs = {k: v["sensitivity"] for k, v in report["evaluations"].items() if v.get("sensitivity")}
    keys = list(next(iter(evs.values()), {}))
    return table(["measure", *evs], [[k, *(evs[m].get(k) for m in evs)] for k in keys])


def _plots(report: dict[str, Any]) -> list[str]:
    it = [r for r in report["iterations"]]
    sparsity_png = line_plot(
        [r["achieved_sparsity"] for r in it],
        {
            "clean (defender split)": [r["metrics"].get("clean_accuracy") for r in it],
            "PGD (defender split)": [r["metrics"].get("pgd_accuracy") for r in it],
        },
        xlabel="sparsity",
        ylabel="accuracy",
        title="Sparsity vs clean / robust accuracy",
    )
    evs = report["evaluations"]
    eps = [r["eps"] for r in evs["dense"]["sweep"]]
    sweep: dict[str, Sequence[float | None]] = {
        f"{name} (PGD{', BPDA' if name == 'int8' else ''})": [r["robust_accuracy"] for r in ev["sweep"]]
        for name, ev in evs.items()
    }
    eps_png = line_plot(eps, sweep, xlabel="eps", ylabel="robust accuracy", title="eps vs robust accuracy")
    tc = report["transfer_curve"]
    transfer_png = line_plot(
        [r["eps"] for r in tc],
        {
            "dense -> dense (white box)": [r["dense_to_dense"] for r in tc],
            "dense -> pruned (transfer)": [r["dense_to_pruned"] for r in tc],
            "pruned -> pruned (white box)": [r["pruned_to_pruned"] for r in tc],
            "pruned -> dense (transfer)": [r["pruned_to_dense"] for r in tc],
        },
        xlabel="eps",
        ylabel="accuracy on the target",
        title="Transfer: crafted on source -> scored on target",
    )
    return [
        img(sparsity_png, "sparsity vs accuracy"),
        img(eps_png, "eps vs robust accuracy"),
        img(transfer_png, "dense vs pruned transfer"),
    ]


def _facts(report: dict[str, Any]) -> str:
    tm, data = report["threat_model"], report["data"]
    rows = [
        ["model", report["model"]],
        ["model SHA-256", report["model_sha256"]],
        ["dataset", report["dataset"]],
        ["threat model", f"{tm['norm']} eps={tm['eps']:g} ({tm.get('eps_units', tm['space'])})"],
        ["evaluation data", data["eval"]],
        ["collapse decisions on", data["selection"]],
        ["defender split", data["clean_source"]],
        ["fine-tuning data", f"{data['finetune']} ({data['finetune_samples']} samples)"],
        ["pruning", report["pruning"]["method"]],
        ["hardened model", report.get("hardened_model")],
        ["hardened weights SHA-256", report.get("hardened_weights_sha256")],
        *run_rows(report),
    ]
    return table(["fact", "value"], rows)


def _sentence(report: dict[str, Any]) -> str:
    """What happened, in one sentence: the verdict, then robust and clean accuracy before and after pruning."""
    verdict, stages = report["verdict"], {s["stage"]: s for s in report["stages"]}
    dense, pruned = stages["dense"], stages["pruned"]
    eps = report["threat_model"]["eps"]
    outcome = {
        True: "Pruning made the model more robust",
        False: "Pruning did not make the model more robust",
        None: "No conclusion on robustness",
    }[verdict["helped"]]
    return (
        f"{outcome}: at {pct(pruned['sparsity'])} sparsity, PGD accuracy (eps {eps:g}) went from "
        f"{pct(dense['pgd'])} to {pct(pruned['pgd'])} and clean accuracy from {pct(dense['clean'])} to "
        f"{pct(pruned['clean'])}."
    )


def _key_figures(report: dict[str, Any]) -> list[str]:
    """Each model's accuracies under the verdict, as percentages (and the ONNX check when one ran)."""
    rows = [
        [s["stage"], pct(s["sparsity"]), pct(s["clean"]), pct(s["fgsm"]), pct(s["pgd"]), pct(s["transfer_pgd"])]
        for s in report["stages"]
    ]
    out = [table(["model", "sparsity", "clean", "FGSM", "PGD", "transfer (PGD)"], rows)]
    if report.get("onnx"):
        out.append(_onnx(report["onnx"]))
    return out


def _onnx(section: dict[str, Any]) -> str:
    rows = []
    for kind, rec in section.items():
        if rec is None:
            continue
        if rec.get("file") is None:
            rows.append([kind, "not exported", rec["reason"], None, None])
        else:
            rows.append([kind, rec["file"], rec["inputs"], f"{rec['max_abs_diff']:.2e}", pct(rec["argmax_agreement"])])
    return "<h3>ONNX export (onnxruntime vs PyTorch)</h3>" + table(
        ["model", "file", "checked on", "max |logit difference|", "argmax agreement"], rows
    )


def render_harden_html(report: dict[str, Any]) -> str:
    verdict, collapse = report["verdict"], report["collapse"]
    cls = "pass" if verdict["helped"] else "fail"
    sections = [
        "<h2>Verdict</h2>",
        f"<p class='{cls}'>{html.escape(verdict['statement'])}</p>",
        f"<p>Collapse detection: {html.escape(collapse['message'])}</p>",
    ]
    if report.get("quantized") and report["quantized"].get("masking_flag"):
        sections.append(f"<p class='fail'>{html.escape(report['quantized']['masking_flag']['message'])}</p>")
    sections += [*policy_section(report.get("policy")), "<h2>Stages</h2>", _stages(report), *_positive(report)]
    sections += ["<h2>Gradient-masking flags</h2>", flags_table(report["flags"])]
    for name, ev in report["evaluations"].items():
        sections += [f"<h3>Attacks on the {html.escape(name)} model</h3>", _attacks(ev)]
    sections += ["<h2>Prune / fine-tune cycles</h2>", _iterations(report), "<h2>Plots</h2>", *_plots(report)]
    sections += ["<h2>Gradient sensitivity</h2>", _sensitivity(report)]
    if report["pruning"].get("features"):
        feats = report["pruning"]["features"]
        sections += [
            "<h2>Input features</h2>",
            table(["feature", "importance", "kept"], [[f["feature"], f["importance"], f["kept"]] for f in feats]),
        ]
    sections += [
        "<h2>Facts</h2>",
        _facts(report),
        config_section({"protocol": report["protocol"], "config": report["config"], "versions": report["versions"]}),
    ]
    return report_page(
        "pruneguard harden report",
        _sentence(report),
        status="pass" if verdict["helped"] else "fail",
        key_figures=_key_figures(report),
        details=sections,
    )
