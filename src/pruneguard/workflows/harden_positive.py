"""The harden job's positive-class evaluation (tabular data with a rare class): for every stage, the class's
precision, recall, F1, PR-AUC, ROC-AUC and recall at the chosen false-positive rate, and its recall when its
rows are attacked towards the other class inside the constraints file.

The int8 stage has no gradients of its own: it is scored on the rows crafted against the float pruned model
(transfer), and says so.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pruneguard.attacks.evasion.tabular import PositiveEvasion
from pruneguard.config_harden import HardenConfig
from pruneguard.evaluation.imbalanced import positive_class_report
from pruneguard.quantization import quantize
from pruneguard.workflows.harden_data import HardenData, PositiveClass

__all__ = ["evaluate_positive_class", "positive_threat_model", "attach_positive_class_", "POSITIVE_KEYS"]

POSITIVE_KEYS = ("precision", "recall", "f1", "pr_auc", "roc_auc", "recall_at_fpr", "robust_recall_at_fpr")


def positive_threat_model(cfg: HardenConfig, pos: PositiveClass) -> dict[str, Any]:
    """What the positive-class evasion assumes, in words and numbers (for the report)."""
    return {
        "attacker": f"edits rows of class {pos.label!r} only, to have them classified as another class",
        "untouched": "rows of every other class (a fraudster gains nothing from flagging legitimate rows)",
        "eps": cfg.eps,
        "eps_units": "standard deviations of each feature (L-inf)",
        "steps": cfg.pgd_steps,
        "range": "each feature stays within the data's [min, max] and the constraint bounds",
        "constraints_file": None if cfg.constraints is None else str(cfg.constraints),
        "constraints": pos.constraints.describe(),
        "operating_point": f"the threshold flagging at most {cfg.fpr:g} of the clean negatives, set per model",
    }


def evaluate_positive_class(
    cfg: HardenConfig, data: HardenData, models: dict[str, nn.Module], *, int8: bool = False
) -> dict[str, Any] | None:
    """Per-stage positive-class metrics on the whole test split; ``None`` without a positive class.

    ``models`` maps stage names to float models (``dense``, ``pruned``); with ``int8`` the pruned model is
    quantized as the job does (static int8, calibrated on the defender's split) and scored on transferred rows.
    """
    pos = data.positive
    if pos is None:
        return None
    attack = PositiveEvasion(
        positive=pos.index, eps=cfg.eps, steps=cfg.pgd_steps, constraints=pos.constraints, data_range=pos.data_range
    )
    stages: dict[str, Any] = {}
    crafted = None
    for name, model in models.items():
        stages[name], x_adv = positive_class_report(
            model, pos.x_test, pos.y_test, pos.index, fpr=pos.fpr, attack=attack, seed=cfg.seed
        )
        stages[name]["attack"] = "white-box constrained PGD on this model"
        crafted = x_adv if name == "pruned" else crafted
    if int8 and "pruned" in models:
        qmodel = quantize(models["pruned"], "static_int8", calibration=data.clean)
        stages["int8"], _ = positive_class_report(qmodel, pos.x_test, pos.y_test, pos.index, fpr=pos.fpr, x_adv=crafted)
        stages["int8"]["attack"] = "transfer: rows crafted on the float pruned model"
    return {
        "positive_label": pos.label,
        "positive_index": pos.index,
        "minority_share": pos.minority_share,
        "fpr": pos.fpr,
        "n_test": int(pos.y_test.numel()),
        "n_positive_test": int((pos.y_test == pos.index).sum()),
        "threat_model": positive_threat_model(cfg, pos),
        "stages": stages,
    }


def attach_positive_class_(report: dict[str, Any], positive: dict[str, Any] | None) -> None:
    """Put the positive-class evaluation into ``report``: its own section, its threat model beside the
    all-rows one, and its headline figures on every stage row (``stage["positive"]``)."""
    report["positive_class"] = positive
    if positive is None:
        return
    report["threat_model"]["positive_evasion"] = positive["threat_model"]
    for stage in report["stages"]:
        row = positive["stages"].get(stage["stage"])
        stage["positive"] = None if row is None else {k: row.get(k) for k in POSITIVE_KEYS}
