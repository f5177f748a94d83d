"""Defender splits: stratified sampling, hold-out split, clean split and the split hash."""

from __future__ import annotations

import pytest
import torch

from pruneguard.data import clean_split, holdout_split, indices_hash, stratified_sample
from pruneguard.errors import ConfigError


def _labels(counts: list[int], *, shuffle_seed: int | None = 0) -> torch.Tensor:
    y = torch.cat([torch.full((c,), k, dtype=torch.long) for k, c in enumerate(counts)])
    if shuffle_seed is not None:
        y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(shuffle_seed))]
    return y


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_stratified_sample_keeps_class_proportions() -> None:
    y = _labels([500, 300, 200])
    idx = stratified_sample(y, 100, generator=_gen(0))
    assert idx.numel() == 100
    assert torch.equal(idx, torch.sort(idx).values)
    assert idx.unique().numel() == 100
    assert torch.bincount(y[idx], minlength=3).tolist() == [50, 30, 20]


def test_stratified_sample_largest_remainders() -> None:
    y = _labels([5, 3, 2])
    idx = stratified_sample(y, 5, generator=_gen(0))
    counts = torch.bincount(y[idx], minlength=3).tolist()
    assert sum(counts) == 5
    quotas = [2.5, 1.5, 1.0]
    assert all(int(q) <= c <= int(q) + 1 for q, c in zip(quotas, counts, strict=True))


def test_stratified_sample_is_reproducible() -> None:
    y = _labels([100, 100])
    a = stratified_sample(y, 20, generator=_gen(7))
    b = stratified_sample(y, 20, generator=_gen(7))
    c = stratified_sample(y, 20, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_stratified_sample_whole_set() -> None:
    y = _labels([3, 4])
    assert torch.equal(stratified_sample(y, 7, generator=_gen(0)), torch.arange(7))


@pytest.mark.parametrize("count", [0, -1, 11])
def test_stratified_sample_rejects_bad_counts(count: int) -> None:
    with pytest.raises(ConfigError, match=f"sample size {count}"):
        stratified_sample(_labels([5, 5]), count)


def test_holdout_split_partitions_indices() -> None:
    y = _labels([600, 400])
    train, held = holdout_split(y, 0.1, generator=_gen(0))
    assert held.numel() == 100 and train.numel() == 900
    assert set(train.tolist()).isdisjoint(held.tolist())
    assert torch.equal(torch.sort(torch.cat([train, held])).values, torch.arange(1000))
    assert torch.bincount(y[held], minlength=2).tolist() == [60, 40]
    train2, held2 = holdout_split(y, 0.1, generator=_gen(0))
    assert torch.equal(held, held2) and torch.equal(train, train2)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_holdout_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ConfigError, match="holdout_fraction"):
        holdout_split(_labels([10, 10]), fraction)


def test_clean_split_draws_only_from_pool() -> None:
    y = _labels([600, 400])
    _, pool = holdout_split(y, 0.1, generator=_gen(0))
    clean = clean_split(y, pool, clean_fraction=0.05, generator=_gen(1))
    assert clean.numel() == 50  # 5% of the full training split (total = 1000)
    assert set(clean.tolist()) <= set(pool.tolist())
    assert clean.unique().numel() == 50
    assert torch.bincount(y[clean], minlength=2).tolist() == [30, 20]


def test_clean_split_total_sets_the_fraction_base() -> None:
    y = _labels([60, 40])
    pool = torch.arange(100)
    assert clean_split(y, pool, clean_fraction=0.01, total=5000, generator=_gen(0)).numel() == 50


def test_clean_samples_wins_over_fraction() -> None:
    y = _labels([60, 40])
    pool = torch.arange(0, 100, 2)
    clean = clean_split(y, pool, clean_fraction=0.9, clean_samples=10, generator=_gen(0))
    assert clean.numel() == 10
    assert set(clean.tolist()) <= set(pool.tolist())


def test_clean_split_is_reproducible() -> None:
    y = _labels([300, 300])
    pool = torch.arange(100, 400)
    a = clean_split(y, pool, clean_samples=30, generator=_gen(3))
    b = clean_split(y, pool, clean_samples=30, generator=_gen(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.01, None])
def test_clean_split_rejects_fraction_outside_unit_interval(fraction: float | None) -> None:
    y = _labels([50, 50])
    with pytest.raises(ConfigError, match="clean-fraction"):
        clean_split(y, torch.arange(100), clean_fraction=fraction)


def test_clean_fraction_one_is_accepted() -> None:
    y = _labels([5, 5])
    assert clean_split(y, torch.arange(10), clean_fraction=1.0, generator=_gen(0)).numel() == 10


def test_clean_split_rejects_requests_larger_than_pool() -> None:
    y = _labels([500, 500])
    pool = torch.arange(20)
    with pytest.raises(ConfigError, match="only 20 held-out"):
        clean_split(y, pool, clean_fraction=0.05)  # 50 of 1000 > 20
    with pytest.raises(ConfigError, match="only 20 held-out"):
        clean_split(y, pool, clean_samples=21)


def test_clean_samples_below_two_rejected() -> None:
    with pytest.raises(ConfigError, match="clean-samples=1"):
        clean_split(_labels([5, 5]), torch.arange(10), clean_samples=1)


def test_indices_hash_is_order_independent() -> None:
    a = torch.tensor([5, 1, 9, 3])
    assert indices_hash(a) == indices_hash(torch.tensor([1, 3, 5, 9]))
    assert indices_hash(a) == indices_hash(a.to(torch.int32))
    assert indices_hash(a) == indices_hash(a.reshape(2, 2))
    assert indices_hash(a) != indices_hash(torch.tensor([1, 3, 5, 8]))
    assert len(indices_hash(a)) == 64
