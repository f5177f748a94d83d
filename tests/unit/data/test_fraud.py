"""The synthetic fraud table: seeded, about 0.2% fraud, signal only in the informative components."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pruneguard.data.csv import load_csv
from pruneguard.data.fraud import DEFAULT_ROWS, INFORMATIVE, LABEL, feature_names, make_fraud_table, write_fraud_csv
from pruneguard.errors import ConfigError


def test_table_shape_rate_and_seed() -> None:
    names, x, y = make_fraud_table(DEFAULT_ROWS, seed=3)
    assert names == feature_names() and len(names) == 32 and names[0] == "Time" and names[-1] == "Amount"
    assert x.shape == (DEFAULT_ROWS, 32) and int(y.sum()) == 10  # 0.2% of 5,000
    assert (x[:, -1] >= 0).all() and (x[:, 0] >= 0).all()
    _, x2, y2 = make_fraud_table(DEFAULT_ROWS, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(make_fraud_table(DEFAULT_ROWS, seed=4)[1], x)


def test_fraud_signal_lives_in_the_informative_components() -> None:
    names, x, y = make_fraud_table(20_000, fraud_rate=0.05, seed=0)
    std = x[y == 0].std(0)
    gap = (x[y == 1].mean(0) - x[y == 0].mean(0)) / std
    for name, shift in INFORMATIVE.items():
        j = names.index(name)
        assert np.sign(gap[j]) == np.sign(shift) and abs(gap[j]) > 0.4 * abs(shift)
    quiet = [names.index(f"V{j}") for j in range(1, 31) if f"V{j}" not in INFORMATIVE]
    assert np.abs(gap[quiet]).max() < 0.25


def test_csv_round_trip_and_no_overwrite(tmp_path: Path) -> None:
    path = write_fraud_csv(tmp_path / "f.csv", rows=500, fraud_rate=0.02, seed=0)
    train, test, features = load_csv(path, LABEL, test_fraction=0.2, seed=0)
    assert features == feature_names() and train.classes == ("0", "1")
    assert int(train.y.sum()) + int(test.y.sum()) == 10
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="exists"):
        write_fraud_csv(path, rows=500)
    assert path.read_bytes() == before
    with pytest.raises(ConfigError, match="fraud_rate=0.7"):
        make_fraud_table(100, fraud_rate=0.7)
