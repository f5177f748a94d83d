from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pruneguard.metrics import accuracy, mean_kl


def test_accuracy_from_logits_and_predictions() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    assert accuracy(logits, y) == 2 / 3
    assert accuracy(torch.tensor([0, 1, 1]), y) == 1.0
    assert math.isnan(accuracy(torch.empty(0, 2), torch.empty(0, dtype=torch.long)))


def test_mean_kl_is_zero_for_equal_outputs_and_matches_torch() -> None:
    g = torch.Generator().manual_seed(0)
    ref, other = torch.randn(50, 10, generator=g), torch.randn(50, 10, generator=g)
    assert mean_kl(ref, ref) == 0.0
    assert mean_kl(ref, ref + 3.0) == pytest.approx(0.0, abs=1e-6)  # a shift of every logit is the same softmax
    expected = F.kl_div(F.log_softmax(other, 1), F.log_softmax(ref, 1), log_target=True, reduction="batchmean")
    assert mean_kl(ref, other) == pytest.approx(float(expected), rel=1e-5) and mean_kl(ref, other) > 0.1
    assert math.isnan(mean_kl(torch.empty(0, 10), torch.empty(0, 10)))
    with pytest.raises(ValueError, match="shape"):
        mean_kl(ref, other[:, :5])
