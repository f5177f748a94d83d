"""benchmarks/margin_dev.py: the largest margin per class, its statistics, and which splits it reads."""

from __future__ import annotations

import math
from types import ModuleType

import pytest
import torch
from torch import nn


@pytest.fixture(scope="module")
def margin(benchmark_module) -> ModuleType:
    return benchmark_module("margin_dev.py", "margin_dev_bench")


class _Shortcut(nn.Module):
    """Three classes on 1x4x4 images: classes 0 and 1 read the image's mean, class 2 one pixel with a large weight
    (a shortcut feature: no natural image needs it, but an input can push it far)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return self.scale * torch.stack([m, 1 - m, 8 * x[:, 0, 0, 0] - 4], dim=1)


def test_the_shortcut_class_reaches_the_largest_margin_and_the_model_is_untouched(margin: ModuleType) -> None:
    model = _Shortcut()
    margins = margin.class_margins(model, (1, 4, 4), starts=2, steps=60, seed=0)
    assert len(margins) == 3
    assert max(range(3), key=margins.__getitem__) == 2
    assert margins[2] > 2 * max(margins[0], margins[1])
    assert model.scale.requires_grad and model.scale.item() == 1.0  # frozen for the search only, not trained
    again = margin.class_margins(model, (1, 4, 4), starts=2, steps=60, seed=0)
    assert again == margins  # seeded


def test_the_statistics_of_the_largest_margin(margin: ModuleType) -> None:
    stats = margin.margin_statistics([1.0, 2.0, 3.0, 4.0, 12.0])
    assert stats["class"] == 4
    assert stats["ratio"] == pytest.approx(3.0)
    # the other classes' median 2.5, MAD 1.0 (times 1.4826)
    assert stats["z"] == pytest.approx((12.0 - 2.5) / 1.4826)
    assert math.isinf(margin.margin_statistics([1.0, 1.0, 1.0, 5.0])["z"])  # no spread among the others


def test_the_summary_counts_what_the_ratio_adds_to_the_finder(margin: ModuleType) -> None:
    def row(i: str, backdoored: bool, target: int, cls: int, ratio: float, evidence: bool | None) -> dict:
        finder = None if evidence is None else {"class": target, "evidence": evidence, "measure": 0.5}
        spec = {"id": i, "backdoored": backdoored, "target_label": target}
        return {"spec": spec, "class": cls, "z": ratio * 3, "ratio": ratio, "finder": finder}

    rows = [
        row("a", True, 3, 3, 1.5, False),  # missed by the finder, flagged here with its target
        row("b", True, 4, 8, 1.6, False),  # missed, flagged for another class
        row("c", True, 2, 2, 1.1, True),
        row("d", False, 0, 5, 1.2, False),
        row("e", False, 0, 8, 1.35, None),
    ]
    out = margin.summary(rows, 1.3)
    assert (out["backdoored"], out["clean"]) == (3, 2)
    assert (out["flagged_backdoored"], out["flagged_right_class"], out["flagged_clean"]) == (2, 1, 1)
    assert out["target_named"] == 2
    assert out["finder_missed"] == ["a", "b"] and out["finder_missed_flagged_right"] == ["a"]
    assert out["auroc_ratio"] == pytest.approx(4 / 6)


def test_an_evaluation_split_is_refused_in_one_line(margin: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        margin.main(["--split", "eval8"])
    assert exit_info.value.code == 2
    assert "--split=eval8 is an evaluation split" in capsys.readouterr().err
