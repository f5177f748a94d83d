"""benchmarks/unlearn_parts.py: the parts switched off, the weight change, the table and its options."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch

from pruneguard.recipes import get_recipe
from pruneguard.scan.reversal import TRIGGER_KINDS

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def up(benchmark_module) -> ModuleType:
    return benchmark_module("unlearn_parts.py", "unlearn_parts_bench")


def test_the_full_part_is_the_default_recipes_round(up: ModuleType) -> None:
    repair = get_recipe("default").repair
    # auto unlearns the stamps, and the warp only where a warp was the evidence: the part is the stamps' round
    assert repair.trigger == "auto" and up.PARTS["repair"] == (TRIGGER_KINDS, True, True, True)
    assert repair.distill > 0 and repair.suppress > 0 and repair.distill_augment
    assert up.PARTS["clean_only"][0] == () and up.PARTS["patch_only"][0] == ("patch",)


def test_weight_change_is_the_l2_norm_of_the_float_tensors(up: ModuleType) -> None:
    before = {"w": torch.zeros(2), "n": torch.tensor(1)}
    after = {"w": torch.tensor([3.0, 4.0]), "n": torch.tensor(7)}
    assert up.weight_change(before, after) == pytest.approx(5.0)


def test_table_rows(up: ModuleType) -> None:
    base = {"model": "dev-14", "arch": "plain_cnn", "trigger": "random_patch", "target": 6}
    rows = [{**base, "part": "none", "validation_accuracy": 0.85, "accuracy": 0.8365, "asr": 0.54,
             "validation_target_kept": 1.0, "target_kept": 1.0},
            {**base, "part": "clean_only", "lr": 0.01, "validation_accuracy": 0.88, "accuracy": 0.8342, "asr": 0.394,
             "validation_target_kept": 0.5, "target_kept": None, "weight_change": 0.27}]  # fmt: skip
    md = up.markdown(rows)
    assert "| dev-14 | plain_cnn | random_patch (6) | none | – | 85.0 | 83.65 | 54.00 | 100 / 100 | – |" in md
    assert "| clean_only | 0.01 | 88.0 | 83.42 | 39.40 | 50 / – | 0.27 |" in md


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "eval-01"], "'eval-01' is not accepted"),
        (["--models", "eval8-01"], "'eval8-01' is not accepted"),
        (["--models", "dev-14", "--parts", "nope"], "'nope' is not accepted"),
        (["--models", "dev-14", "--lrs", "0,1"], "--lrs='0,1' is not accepted"),
    ],
)
def test_bad_options_exit_2_with_one_line(up: ModuleType, argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        up.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
