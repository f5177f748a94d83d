"""The validation part of the clean data: stratified, disjoint from the part the steps use, seeded."""

from __future__ import annotations

import pytest
import torch

from pruneguard.data.splits import validation_split
from pruneguard.errors import ConfigError


def test_validation_is_stratified_disjoint_and_seeded() -> None:
    y = torch.arange(10).repeat_interleave(60)  # 600 labels, 60 per class
    use, val = validation_split(y, 0.2, generator=torch.Generator().manual_seed(1))
    assert len(val) == 120 and len(use) == 480 and not set(use.tolist()) & set(val.tolist())
    assert torch.bincount(y[val], minlength=10).tolist() == [12] * 10
    again = validation_split(y, 0.2, generator=torch.Generator().manual_seed(1))[1]
    other = validation_split(y, 0.2, generator=torch.Generator().manual_seed(2))[1]
    assert torch.equal(val, again) and not torch.equal(val, other)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_a_fraction_outside_the_open_unit_interval_is_refused(fraction: float) -> None:
    with pytest.raises(ConfigError, match="validation_fraction"):
        validation_split(torch.zeros(10, dtype=torch.long), fraction)
