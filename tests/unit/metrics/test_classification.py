from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pruneguard.metrics import accuracy, class_kept, mean_kl, paired_change


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


def test_paired_change_counts_flips_and_the_spread_of_the_drop() -> None:
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    before = torch.tensor([0, 1, 2, 3, 0, 1, 2, 0])  # 7 of 8 right
    after = torch.tensor([0, 1, 2, 3, 1, 1, 2, 3])  # image 4 lost, image 7 gained
    out = paired_change(before, after, y)
    se = pytest.approx(0.5 / 8**0.5)
    assert out == {"images": 8, "changed": 2, "lost": 1, "gained": 1, "drop": 0.0, "drop_se": se}
    # the drop reads 0, yet two of eight images changed: the standard error is sqrt(2/8 - 0) / sqrt(8)
    d = torch.tensor([0.0, 0, 0, 0, 1, 0, 0, -1])  # the per-image differences, as a paired sample
    assert out["drop_se"] == pytest.approx(float(d.std(unbiased=False)) / 8**0.5)
    same = paired_change(before, before, y)
    assert same["changed"] == 0 and same["drop"] == 0 and same["drop_se"] == 0
    logits = F.one_hot(after, 4).float()  # logits work as predictions
    assert paired_change(before, logits, y) == out
    with pytest.raises(ValueError, match="shape"):
        paired_change(before, after[:4], y)


def test_class_kept_is_the_share_of_a_class_s_images_that_stay_in_it() -> None:
    before = torch.tensor([6, 6, 6, 6, 1, 2, 6])
    after = torch.tensor([6, 0, 6, 2, 6, 2, 6])  # two of the five left class 6; an image of class 1 came in
    assert class_kept(before, after, 6) == pytest.approx(3 / 5)
    assert class_kept(before, before, 6) == 1.0
    assert class_kept(before, after, 9) is None  # no image was in class 9: nothing to judge
    logits = torch.nn.functional.one_hot(before, 10).float()
    assert class_kept(logits, after, 6) == pytest.approx(3 / 5)  # logits or predictions
    with pytest.raises(ValueError, match="the same images"):
        class_kept(before, after[:3], 6)
