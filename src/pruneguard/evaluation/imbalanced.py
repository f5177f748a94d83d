"""The positive (rare) class of a tabular model, scored as a fraud team would: clean metrics of that class and
its recall under constrained evasion of positive rows, and the success of a trigger on detected positives.

Operating point: the threshold that flags at most ``fpr`` of the clean negatives (``recall_at_fpr``). Under
evasion the negatives are untouched (the attacker edits only its own positive rows), so the same threshold
applies: ``robust_recall_at_fpr`` is the share of positive rows still above it after the attack.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from pruneguard.attacks.evasion.tabular import PositiveEvasion
from pruneguard.metrics.imbalanced import imbalanced_metrics, positive_scores
from pruneguard.utils.modes import eval_mode
from pruneguard.utils.seed import make_generator

__all__ = ["logits_of", "positive_class_report", "trigger_success"]


@torch.no_grad()
def logits_of(model: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Logits ``(N, K)`` of ``model`` on raw rows ``x`` ``(N, F)``, on CPU (eval mode, flags restored)."""
    device = next((p.device for p in model.parameters()), x.device)
    with eval_mode(model):
        parts = [model(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0)


def positive_class_report(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    positive: int,
    *,
    fpr: float = 0.01,
    attack: PositiveEvasion | None = None,
    x_adv: Tensor | None = None,
    attack_model: nn.Module | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any], Tensor | None]:
    """Clean positive-class metrics of ``model`` on ``(x, y)`` and, with ``attack`` (or ready ``x_adv``), its
    recall on the attacked positive rows.

    ``attack`` is crafted on ``attack_model`` (default: ``model``, white-box); pass ``x_adv`` to score rows
    crafted elsewhere (transfer, e.g. onto an int8 model). Returns the JSON-ready metrics and the attacked rows.
    """
    logits = logits_of(model, x)
    out = imbalanced_metrics(logits, y, positive, fpr=fpr)
    if attack is not None and x_adv is None:
        x_adv = attack(attack_model or model, x, y, generator=make_generator(seed))
    if x_adv is not None:
        pos = y == positive
        adv_logits = logits_of(model, x_adv[pos])
        scores = positive_scores(adv_logits, positive)
        n_pos = int(pos.sum())
        out["robust_recall"] = int((adv_logits.argmax(1) == positive).sum()) / n_pos if n_pos else float("nan")
        out["robust_recall_at_fpr"] = int((scores > out["threshold_at_fpr"]).sum()) / n_pos if n_pos else float("nan")
        changed = (x_adv[pos] != x[pos]).any(0)
        out["columns_changed"] = int(changed.sum())
    return out, x_adv


def trigger_success(
    model: nn.Module, x: Tensor, y: Tensor, x_triggered: Tensor, positive: int, threshold: float
) -> dict[str, Any]:
    """How well a trigger hides positives that ``model`` catches.

    ``asr``: among positive rows flagged clean (score above ``threshold``, the clean ``fpr`` operating point),
    the share no longer flagged once triggered. ``asr_argmax``: the usual ASR, the share of triggered positive
    rows whose arg-max is not ``positive`` (it counts positives the model missed anyway, so it flatters the
    attack at low recall).
    """
    pos = y == positive
    clean = positive_scores(logits_of(model, x[pos]), positive)
    trig_logits = logits_of(model, x_triggered[pos])
    trig = positive_scores(trig_logits, positive)
    caught = clean > threshold
    n_caught = int(caught.sum())
    return {
        "asr": int((trig[caught] <= threshold).sum()) / n_caught if n_caught else float("nan"),
        "asr_argmax": float((trig_logits.argmax(1) != positive).float().mean()) if int(pos.sum()) else float("nan"),
        "positives_caught": n_caught,
        "positives": int(pos.sum()),
    }
