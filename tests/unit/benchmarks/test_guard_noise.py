"""benchmarks/guard_noise.py: the accepted repairs' gap and the spread of the guard's statistics."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch


@pytest.fixture(scope="module")
def bench(benchmark_module) -> ModuleType:
    return benchmark_module("guard_noise.py", "guard_noise_bench")


def test_spread_of_the_accuracy_drop_and_of_the_true_class_probability(bench: ModuleType) -> None:
    n_img = 1000
    y = torch.zeros(n_img, dtype=torch.long)
    p_orig = torch.tensor([[0.9, 0.1]]).repeat(n_img, 1)
    p_new = p_orig.clone()
    p_new[:100] = torch.tensor([0.45, 0.55])  # 10% of the images flip to the wrong class, just
    out = bench.spread(p_orig, p_new, y, 100, 400, torch.Generator().manual_seed(0))
    assert out["test_drop"] == pytest.approx(10.0) and out["flipped"] == pytest.approx(0.1)
    acc, soft = out["accuracy"], out["true_class_probability"]
    assert acc["mean"] == pytest.approx(10.0, abs=0.5)  # an unbiased estimate of the drop ...
    assert 2.0 < acc["sd"] < 4.0  # ... with the spread of a count: sqrt(0.1 * 0.9 * 900 / 999 / 100) ~ 2.85 points
    assert acc["rmse"] == pytest.approx(acc["sd"], rel=0.05) and acc["over_2_points"] > 0.99
    assert soft["mean"] == pytest.approx(4.5, abs=0.3)  # each flipped image lost 0.45 of probability, not 1
    assert soft["sd"] == pytest.approx(0.45 * acc["sd"], rel=0.1)
    assert soft["rmse"] > 5.0  # biased: it under-reads a drop made of barely flipped images
    same = bench.spread(p_orig, p_orig, y, 100, 10, torch.Generator().manual_seed(0))
    assert out["changed"]["test"] == pytest.approx(10.0) and 2.0 < out["changed"]["sd"] < 4.0
    assert same["test_drop"] == 0 and same["accuracy"]["rmse"] == 0 and same["flipped"] == 0
    assert same["changed"] == {"test": 0.0, "sd": 0.0}


def test_the_class_guard_statistic_and_how_often_a_draw_reads_it_under_the_cut(bench: ModuleType) -> None:
    """Half the images in class 0, and the repair takes 30% of them to class 1: kept 0.7 on all images; draws of
    100 images hold about 50 of class 0, so the share read spreads by about sqrt(0.21 / 50) ~ 0.065 and falls under
    0.6 only rarely, under 0.75 most of the time."""
    n_img = 1000
    y = torch.zeros(n_img, dtype=torch.long)
    y[500:] = 1
    p_orig = torch.nn.functional.one_hot(y, 2).float()
    p_new = p_orig.clone()
    p_new[:150] = torch.tensor([0.0, 1.0])  # 150 of the 500 images of class 0 leave it
    out = bench.spread(p_orig, p_new, y, 100, 400, torch.Generator().manual_seed(0), suspect=0, kept_cut=0.6)
    kept = out["suspect_kept"]
    assert kept["test"] == pytest.approx(0.7) and kept["mean"] == pytest.approx(0.7, abs=0.02)
    assert 0.04 < kept["sd"] < 0.09 and kept["under_cut"] < 0.15 and kept["cut"] == 0.6
    high = bench.spread(p_orig, p_new, y, 100, 400, torch.Generator().manual_seed(0), suspect=0, kept_cut=0.75)
    assert high["suspect_kept"]["under_cut"] > 0.6
    assert "suspect_kept" not in bench.spread(p_orig, p_new, y, 100, 10, torch.Generator().manual_seed(0))


def test_accepted_steps_and_their_gap(bench: ModuleType, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    cases = {  # (steps, validation drop, test drop)
        "a": (["anp", "unlearn"], 0.0, 0.02),
        "b": (["anp"], 0.02, 0.01),
        "c": ([], 0.0, 0.0),  # returned unchanged: not a step the guard judged
        "d": (["anp"], 0.01, 0.03),
    }
    for name, (steps, val, test) in cases.items():
        (reports / f"{name}.json").write_text(
            json.dumps({"steps": steps, "validation_drop": val, "accuracy_drop": test, "validation_samples": 120})
        )
    steps = bench.accepted_steps([reports])
    assert [s["report"] for s in steps] == ["reports/a.json", "reports/b.json", "reports/d.json"]
    summary = bench.summarise(steps, [])["accepted"]
    assert summary["reports"] == 3 and summary["mean_gap"] == pytest.approx(1.0)
    assert summary["mean_test_drop"] == pytest.approx(2.0) and summary["test_drop_over_2_points"] == 1
    with pytest.raises(SystemExit) as exc:
        bench.main(["--reports", str(tmp_path / "missing")])
    assert exc.value.code == 2


def test_pixel_shifts_move_each_image_by_one_pixel_with_a_zero_edge(bench: ModuleType) -> None:
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    up, down, left, right = bench.pixel_shifts(x)
    assert torch.equal(down[0, 0], torch.tensor([[0.0, 0, 0], [1, 2, 3], [4, 5, 6]]))
    assert torch.equal(up[0, 0], torch.tensor([[4.0, 5, 6], [7, 8, 9], [0, 0, 0]]))
    assert torch.equal(right[0, 0], torch.tensor([[0.0, 1, 2], [0, 4, 5], [0, 7, 8]]))
    assert torch.equal(left[0, 0], torch.tensor([[2.0, 3, 0], [5, 6, 0], [8, 9, 0]]))


def test_the_shifted_accuracy_averages_each_image_with_its_copies(bench: ModuleType) -> None:
    """10% of the images flip on the images as they are; on the four shifted copies, those same images flip on
    two copies each and 10% other images on one copy each: per image the shifted statistic reads 3/5 or 1/5, its
    mean over all images (0.1 * 0.6 + 0.1 * 0.2 = 8 points) is biased 2 points under the drop of 10, and it
    spreads less than the 0/1 accuracy."""
    n_img, views = 1000, 4
    y = torch.zeros(n_img, dtype=torch.long)
    right, wrong = torch.tensor([0.9, 0.1]), torch.tensor([0.2, 0.8])
    p_orig = right.repeat(n_img, 1)
    p_new = p_orig.clone()
    p_new[:100] = wrong
    s_orig = right.repeat(views, n_img, 1)
    s_new = s_orig.clone()
    s_new[:2, :100] = wrong  # the images flipped as they are flip on two of their copies ...
    s_new[0, 100:200] = wrong  # ... and other images on one copy
    out = bench.spread(p_orig, p_new, y, 100, 400, torch.Generator().manual_seed(0), shifted=(s_orig, s_new))
    acc, shifted = out["accuracy"], out["shifted_accuracy"]
    assert shifted["mean"] == pytest.approx(8.0, abs=0.4) and shifted["bias"] == pytest.approx(-2.0, abs=0.4)
    assert acc["bias"] == pytest.approx(0.0, abs=0.5)
    assert shifted["sd"] < 0.75 * acc["sd"]
    pairs = [
        {"flipped": 0.1, "test_drop": 1.0, **{k: out[k] for k in ("accuracy", "shifted_accuracy")}},
        {"flipped": 0.1, "test_drop": 3.0, **{k: out[k] for k in ("accuracy", "shifted_accuracy")}},
    ]
    spread_summary = bench.summarise([], pairs)["spread"]
    assert spread_summary["within_limit"] == 1 and spread_summary["true_class_probability_rmse"] is None
    assert spread_summary["shifted_accuracy_refuses_within_limit"] == pytest.approx(shifted["over_2_points"])
    assert spread_summary["accuracy_sd"] == pytest.approx(acc["sd"])
