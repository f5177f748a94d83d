"""purify's pruning rule: threshold / count / auto, and the clean-split accuracy cap over any of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pruneguard.config import PurifyConfig, validate_config
from pruneguard.errors import ConfigError
from pruneguard.workflows.purify import select_neurons

MASKS = torch.tensor([0.9, 0.1, 0.2, 0.0, 0.5, 0.15])  # pruning order: 3, 1, 5, 2, 4, 0
# clean-split accuracy after pruning the 0..5 smallest masks
CURVE = [{"pruned": k, "clean_accuracy": a} for k, a in enumerate([0.90, 0.90, 0.89, 0.85, 0.80, 0.70])]


def _cfg(**kw: object) -> PurifyConfig:
    return PurifyConfig(model=Path("m.safetensors"), out=Path("out"), **kw)


def test_the_threshold_alone_prunes_every_mask_under_it() -> None:
    idx, rule, reached = select_neurons(_cfg(threshold=0.2), MASKS, CURVE)
    assert idx.tolist() == [3, 1, 5, 2] and rule == "threshold=0.2" and reached == pytest.approx(0.2)


def test_the_cap_stops_the_threshold_where_clean_accuracy_falls_too_far() -> None:
    idx, rule, reached = select_neurons(_cfg(threshold=0.2, cap_acc_drop=0.02), MASKS, CURVE)
    assert idx.tolist() == [3, 1]  # pruning a third neuron loses 0.05 > 0.02
    assert "capped at 2" in rule and reached == pytest.approx(0.1)
    # a cap the rule never reaches changes nothing
    assert select_neurons(_cfg(threshold=0.2, cap_acc_drop=0.2), MASKS, CURVE)[0].tolist() == [3, 1, 5, 2]
    assert select_neurons(_cfg(prune_count=5, cap_acc_drop=0.06), MASKS, CURVE)[0].tolist() == [3, 1, 5]


def test_a_cap_out_of_range_is_one_line() -> None:
    with pytest.raises(ConfigError, match="--cap-acc-drop=1.5: Input should be less than 1"):
        validate_config(PurifyConfig, {"model": "m", "out": "o", "cap_acc_drop": 1.5})
