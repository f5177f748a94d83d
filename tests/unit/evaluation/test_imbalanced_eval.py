"""Positive-class report and trigger success on a tiny tabular model."""

from __future__ import annotations

import math

import torch

from pruneguard.attacks.evasion.tabular import PositiveEvasion
from pruneguard.evaluation.imbalanced import positive_class_report, trigger_success
from pruneguard.models.zoo import MLP


class _Rule(torch.nn.Module):
    """Flags a row (class 1) when feature 0 is large, unless feature 1 (the 'trigger') is above 5."""

    def __init__(self) -> None:
        super().__init__()
        self.normalize = MLP(2, (2,), [0.0, 0.0], [1.0, 1.0], hidden=(2,)).normalize
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.normalize(x)
        s = z[:, 0] - 10.0 * (z[:, 1] > 5).float() + 0 * self.dummy
        return torch.stack([-s, s], 1)


def test_report_robust_recall_and_trigger_success() -> None:
    x = torch.tensor([[3.0, 0.0], [2.5, 0.0], [0.5, 0.0], [-1.0, 0.0], [-2.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([1, 1, 1, 0, 0, 0])
    model = _Rule()
    attack = PositiveEvasion(positive=1, eps=1.0, steps=10, random_start=False)
    m, x_adv = positive_class_report(model, x, y, 1, fpr=0.0, attack=attack)
    assert m["pr_auc"] == 1.0 and m["recall_at_fpr"] == 1.0 and m["n_positive"] == 3
    assert x_adv is not None and torch.equal(x_adv[y == 0], x[y == 0])
    assert m["robust_recall_at_fpr"] == 2 / 3  # the 0.5 row drops below the best negative (0.0) with eps 1
    triggered = x.clone()
    triggered[:2, 1] = 6.0  # two of the three caught positives carry the trigger
    t = trigger_success(model, x, y, triggered, 1, m["threshold_at_fpr"])
    assert t["positives_caught"] == 3 and math.isclose(t["asr"], 2 / 3)
