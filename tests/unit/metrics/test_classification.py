from __future__ import annotations

import math

import torch

from pruneguard.metrics import accuracy


def test_accuracy_from_logits_and_predictions() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    assert accuracy(logits, y) == 2 / 3
    assert accuracy(torch.tensor([0, 1, 1]), y) == 1.0
    assert math.isnan(accuracy(torch.empty(0, 2), torch.empty(0, dtype=torch.long)))
