"""HTML report of ``pruneguard attack``: the attack's outcome in one sentence, the key figures as percentages, a
few adversarial examples beside their clean images (image data only), then the details. Formatting only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pruneguard.attacks.base import ATTACKS
from pruneguard.errors import UnknownNameError
from pruneguard.reports.page import (
    config_section,
    count,
    figures_table,
    flags_table,
    img,
    pct,
    report_page,
    run_rows,
    table,
)

__all__ = ["render_attack_html", "attack_sentence", "display_name"]

_NORMS = {"linf": "L∞", "l2": "L2"}
_CHECKS = "gradient-masking check"


def display_name(name: str) -> str:
    """A registered attack's name as its papers write it (its class: ``pgd`` -> ``PGD``, ``badnets`` ->
    ``BadNets``); an unknown name is kept as it is."""
    try:
        return ATTACKS.get(name).__name__
    except UnknownNameError:
        return name


def _tabular(result: dict[str, Any]) -> bool:
    """Rows of a table rather than images (``eps`` then counts standard deviations)."""
    return result.get("data_kind", "tabular" if "eps_units" in result["threat_model"] else "image") == "tabular"


def _budget(result: dict[str, Any]) -> str:
    """Norm, eps and the effort the attack spent: ``L∞, ε = 0.1, 40 steps, 1 restart``."""
    tm, params = result["threat_model"], result["attack"]["params"]
    eps = f"ε = {tm['eps']:g}" + (" standard deviations" if _tabular(result) else "")
    parts = [_NORMS.get(tm["norm"], tm["norm"]), eps]
    if "steps" in params:
        parts.append(count(params["steps"], "step"))
    elif result["attack"]["name"] == "fgsm":
        parts.append("one step")
    if "n_queries" in params:
        parts.append(count(params["n_queries"], "query", "queries"))
    if "restarts" in params:
        parts.append(count(params["restarts"], "restart"))
    if "version" in params:
        parts.append(f"{params['version']} version")
    return ", ".join(parts)


def _attack_phrase(result: dict[str, Any]) -> str:
    attack = result["attack"]
    if attack["name"] == "transfer":
        source = Path(attack["source"]).name if attack.get("source") else "a surrogate model"
        return f"{display_name(attack['params'].get('attack', 'pgd'))} transferred from {source}"
    return display_name(attack["name"])


def _masking_clause(result: dict[str, Any]) -> str:
    """What the gradient-masking checks found; empty for a result that does not list the checks it ran."""
    checks, flags = result.get("checks"), result["flags"]
    if flags:
        raised = ", ".join(f["check"].replace("_", " ") for f in flags)
        of = f"{len(flags)} of {count(len(checks), _CHECKS)}" if checks else count(len(flags), _CHECKS)
        return f"; {of} raised a flag ({raised}), so this robust accuracy may overstate the model's robustness"
    if not checks:
        return ""
    if len(checks) == 1:
        return f"; the {_CHECKS} raised no flag"
    return f"; none of the {len(checks)} {_CHECKS}s raised a flag"


def attack_sentence(result: dict[str, Any]) -> str:
    """The report's first sentence: the attack, its budget, robust and clean accuracy, the sample and the
    gradient-masking checks, e.g. ``PGD (L∞, ε = 0.1, 40 steps, 1 restart) takes robust accuracy to 12.3% from
    a clean 91.0% on 1,000 test images; none of the 2 gradient-masking checks raised a flag.``"""
    sample = count(result["n_samples"], "test row" if _tabular(result) else "test image")
    return (
        f"{_attack_phrase(result)} ({_budget(result)}) takes robust accuracy to {pct(result['robust_accuracy'])} "
        f"from a clean {pct(result['clean_accuracy'])} on {sample}{_masking_clause(result)}."
    )


def _key_figures(result: dict[str, Any]) -> str:
    eps, checks = result["threat_model"]["eps"], result.get("checks")
    rows = [
        ["clean accuracy", pct(result["clean_accuracy"])],
        ["robust accuracy (correct before and after the attack)", pct(result["robust_accuracy"])],
        ["attack success rate (of the correctly classified)", pct(result["attack_success_rate"])],
        ["mean perturbation, as a share of ε", pct(result["mean_perturbation"] / eps if eps else None)],
    ]
    if checks is not None:
        rows.append([f"{_CHECKS}s that raised a flag", f"{len(result['flags'])} of {len(checks)}"])
    return figures_table(rows)


def _examples(result: dict[str, Any]) -> list[str]:
    ex = result.get("examples")
    if not ex:
        return []
    rows = [[r["index"], r["label"], r["clean_prediction"], r["adversarial_prediction"]] for r in ex["rows"]]
    return [
        "<h2>Adversarial examples</h2>",
        "<p>Test images (top), the same images attacked (middle) and what the attack changed (bottom, amplified; "
        "mid-grey is no change). The attack's successes are shown first.</p>",
        img(ex["figure_png"], "clean test images, their adversarial versions and the perturbations"),
        table(["index in the attacked sample", "label", "clean prediction", "adversarial prediction"], rows),
    ]


def _facts(result: dict[str, Any]) -> str:
    rows = [
        ["model", result["model"]],
        ["model SHA-256", result["model_sha256"]],
        ["dataset", result["dataset"]],
        ["attack", result["attack"]["name"]],
        ["surrogate model (transfer)", result["attack"].get("source")],
        ["test samples (stratified, seeded)", result["n_samples"]],
        ["mean perturbation", result["mean_perturbation"]],
        ["attack seconds", result["attack_seconds"]],
        ["device", result.get("device")],
        *run_rows(result),
    ]
    return table(["fact", "value"], rows)


def render_attack_html(result: dict[str, Any]) -> str:
    """The page of an attack result (``pruneguard.attack/1``, see :func:`pruneguard.workflows.attack.attack_job`)."""
    details = [
        *_examples(result),
        "<h2>Gradient-masking flags</h2>",
        flags_table(result["flags"]),
        "<h2>Attack</h2>",
        table(["parameter (as the attack ran it)", "value"], list(result["attack"]["params"].items())),
        table(["threat model", "value"], list(result["threat_model"].items())),
        "<h2>Facts</h2>",
        _facts(result),
        config_section({"config": result["config"], "versions": result["versions"]}),
    ]
    return report_page(
        "pruneguard attack report",
        attack_sentence(result),
        status="fail" if result["flags"] else None,
        key_figures=[_key_figures(result)],
        details=details,
    )
