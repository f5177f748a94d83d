"""HTML report of ``pruneguard train``: what was trained and how well, in one sentence (with the planted backdoor
and its success rate when there is one), the key figures as percentages, the training curve, then the details.
Formatting only."""

from __future__ import annotations

from typing import Any

from pruneguard.reports.attack_html import display_name
from pruneguard.reports.page import config_section, count, figures_table, img, pct, report_page, run_rows, table
from pruneguard.reports.plots import line_plot

__all__ = ["render_train_html", "train_sentence"]


def train_sentence(result: dict[str, Any]) -> str:
    """The report's first sentence, e.g. ``Trained small_cnn on fashion_mnist: test accuracy 91.0%; BadNets
    backdoor to class 0, ASR 99.9%.`` (``without a backdoor`` for a clean run)."""
    what, acc = f"Trained {result['arch']} on {result['dataset']}", f"test accuracy {pct(result['test']['accuracy'])}"
    attack = result.get("attack")
    if not attack:
        return f"{what} without a backdoor: {acc}."
    target = attack.get("params", {}).get("target_label")
    to = "" if target is None else f" to class {target}"
    return f"{what}: {acc}; {display_name(attack['name'])} backdoor{to}, ASR {pct(result['test']['asr'])}."


def _poisoned(attack: dict[str, Any]) -> str:
    """How much of the training data the attacker touched (a joint attack trains its trigger with the model)."""
    if attack["poisoned"] == "joint":
        return f"trained jointly with a learned trigger, rate {pct(attack['rate'])}"
    return f"{count(attack['poisoned'], 'sample')} (poison rate {pct(attack['rate'])})"


def _key_figures(result: dict[str, Any]) -> str:
    history, attack = result.get("history") or [], result.get("attack")
    rows = [["test accuracy", pct(result["test"]["accuracy"])]]
    if attack:
        rows += [
            [
                f"{display_name(attack['name'])} attack success rate (triggered test samples sent to the target class)",
                pct(result["test"]["asr"]),
            ],
            ["training data poisoned", _poisoned(attack)],
        ]
    if history:
        rows.append([f"training accuracy, last epoch ({history[-1]['epoch']})", pct(history[-1].get("train_accuracy"))])
    return figures_table(rows)


def _curve(history: list[dict[str, Any]]) -> list[str]:
    if not history:
        return []
    epochs = [h["epoch"] for h in history]
    png = line_plot(
        epochs,
        {
            "training loss": [h.get("loss") for h in history],
            "training accuracy": [h.get("train_accuracy") for h in history],
        },
        xlabel="epoch",
        ylabel="loss / accuracy",
        title="Training",
    )
    rows = [[e, h.get("loss"), h.get("train_accuracy")] for e, h in zip(epochs, history, strict=True)]
    return [
        "<h2>Training curve</h2>",
        img(png, "training loss and accuracy per epoch"),
        table(["epoch", "loss", "training accuracy"], rows),
    ]


def _facts(result: dict[str, Any]) -> str:
    attack = result.get("attack") or {}
    trigger_net = attack.get("trigger_net") or {}
    rows = [
        ["model file", result["model"]],
        ["model SHA-256", result["model_sha256"]],
        ["architecture", result["arch"]],
        ["dataset", result["dataset"]],
        ["held out for the defender (training samples)", result["holdout_samples"]],
        ["held-out indices SHA-256", result["holdout_hash"]],
        ["backdoor attack", attack.get("name")],
        ["learned trigger file", trigger_net.get("file")],
        *run_rows(result),
    ]
    return table(["fact", "value"], rows)


def render_train_html(result: dict[str, Any]) -> str:
    """The page of a training result (``pruneguard.train/1``, see :func:`pruneguard.workflows.train.train_job`)."""
    attack = result.get("attack")
    backdoor = []
    if attack:
        backdoor = ["<h2>Backdoor</h2>", table(["parameter", "value"], list(attack.get("params", {}).items()))]
    details = [
        *_curve(result.get("history") or []),
        *backdoor,
        "<h2>Facts</h2>",
        _facts(result),
        config_section({"config": result["config"], "versions": result["versions"]}),
    ]
    return report_page(
        "pruneguard train report",
        train_sentence(result),
        status=None,
        key_figures=[_key_figures(result)],
        details=details,
    )
