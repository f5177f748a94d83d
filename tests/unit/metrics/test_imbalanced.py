"""Positive-class metrics against scikit-learn's and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from pruneguard.errors import ConfigError
from pruneguard.metrics.imbalanced import (
    average_precision,
    imbalanced_metrics,
    is_imbalanced,
    minority_share,
    recall_at_threshold,
    roc_auc,
    threshold_at_fpr,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_metrics_match_sklearn_with_ties(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(300, generator=g) < 0.1).long()
    scores = (torch.rand(300, generator=g) + 0.3 * y).mul(20).round() / 20  # coarse: many ties
    assert average_precision(scores, y == 1) == pytest.approx(average_precision_score(y.numpy(), scores.numpy()))
    assert roc_auc(scores, y == 1) == pytest.approx(roc_auc_score(y.numpy(), scores.numpy()))


def test_threshold_flags_at_most_fpr_of_negatives() -> None:
    neg = torch.arange(200).float() / 200  # 200 distinct negative scores
    pos = torch.tensor([0.999, 0.994, 0.5, 0.1])
    scores, is_pos = torch.cat([neg, pos]), torch.cat([torch.zeros(200), torch.ones(4)]).bool()
    thr = threshold_at_fpr(scores, is_pos, 0.01)
    assert int((neg > thr).sum()) == 2  # floor(0.01 * 200) negatives above the threshold
    assert recall_at_threshold(scores, is_pos, thr) == 0.5
    assert threshold_at_fpr(scores, is_pos, 0.0) == pytest.approx(float(neg.max()))
    with pytest.raises(ConfigError, match="fpr=1.5"):
        threshold_at_fpr(scores, is_pos, 1.5)


def test_never_flagging_model_scores_zero_recall_despite_high_accuracy() -> None:
    y = torch.tensor([0] * 98 + [1] * 2)
    logits = torch.stack([torch.full((100,), 3.0), torch.linspace(0, 1, 100)], 1)
    m = imbalanced_metrics(logits, y, 1, fpr=0.01)
    assert (logits.argmax(1) == y).float().mean() == 0.98
    assert m["recall"] == 0.0 and m["f1"] == 0.0 and math.isnan(m["precision"])
    assert m["n_positive"] == 2 and m["roc_auc"] == 1.0  # the ranking is perfect, the decision is not
    assert m["recall_at_fpr"] == 1.0


def test_minority_share() -> None:
    y = torch.tensor([0] * 90 + [1] * 10)
    assert minority_share(y) == 0.1 and is_imbalanced(y)
    assert not is_imbalanced(torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ConfigError, match="positive=2"):
        imbalanced_metrics(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), 2)
