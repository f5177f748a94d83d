"""A seeded, synthetic credit-card-fraud-like table: ``Time``, ``V1``..``V30`` (anonymised, PCA-like), ``Amount``
and the label ``Class`` (1 = fraud, about 0.2% of rows).

Modelled on the public credit-card fraud data (Dal Pozzolo et al.), without any of its rows: legitimate rows
draw ``V_j ~ N(0, s_j)`` with variances falling off like principal components; fraud rows shift a handful of
components (``INFORMATIVE``, the ones with high feature importance) by one to three standard deviations, a
third of them only half as far (hard cases, so recall is not trivially 1). The other 22 components carry no
signal: the "low-importance" columns where a trigger can hide. ``Amount`` is log-normal (fraud slightly
larger and wider), ``Time`` uniform seconds over two days. Exactly ``round(fraud_rate * rows)`` rows are fraud.

Example:
    >>> write_fraud_csv("fraud.csv", rows=DEFAULT_ROWS, seed=0)
    >>> header, x, y = make_fraud_table(BENCHMARK_ROWS, seed=0)
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from pruneguard.errors import ConfigError
from pruneguard.utils.io import atomic_write_text

__all__ = [
    "DEFAULT_ROWS",
    "BENCHMARK_ROWS",
    "FRAUD_RATE",
    "COMPONENTS",
    "INFORMATIVE",
    "LABEL",
    "feature_names",
    "make_fraud_table",
    "write_fraud_csv",
]

DEFAULT_ROWS = 5_000
BENCHMARK_ROWS = 150_000
FRAUD_RATE = 0.002
COMPONENTS = 30
LABEL = "Class"
# component -> fraud shift in standard deviations of that component
INFORMATIVE = {"V14": -3.0, "V17": -2.6, "V12": -2.2, "V10": -1.8, "V4": 1.8, "V11": 1.5, "V3": -1.4, "V16": -1.2}


def feature_names() -> list[str]:
    """The feature columns in CSV order (the label ``Class`` comes last)."""
    return ["Time", *(f"V{j}" for j in range(1, COMPONENTS + 1)), "Amount"]


def make_fraud_table(
    rows: int = DEFAULT_ROWS, *, fraud_rate: float = FRAUD_RATE, seed: int = 0
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Return (feature names, ``x`` float64 ``(rows, 32)``, ``y`` int64 ``(rows,)``) drawn from ``seed``."""
    if not isinstance(rows, int) or rows < 10:
        raise ConfigError(f"rows={rows!r} is not accepted; accepted: an integer >= 10")
    if not 0.0 < fraud_rate < 0.5:
        raise ConfigError(f"fraud_rate={fraud_rate} is outside (0, 0.5)")
    rng = np.random.default_rng(seed)
    n_fraud = max(1, round(fraud_rate * rows))
    y = np.zeros(rows, dtype=np.int64)
    y[rng.choice(rows, size=n_fraud, replace=False)] = 1
    scale = 2.0 * 0.93 ** np.arange(COMPONENTS)  # PCA-like: falling variances
    v = rng.standard_normal((rows, COMPONENTS)) * scale
    fraud = np.flatnonzero(y)
    strength = np.where(rng.random(n_fraud) < 1 / 3, 0.5, 1.0)  # a third are hard cases
    for name, shift in INFORMATIVE.items():
        j = int(name[1:]) - 1
        v[fraud, j] += strength * shift * scale[j] + 0.3 * scale[j] * rng.standard_normal(n_fraud)
    amount = np.exp(rng.normal(3.3, 1.2, rows))
    amount[fraud] = np.exp(rng.normal(3.8, 1.6, n_fraud))
    time = np.sort(rng.uniform(0, 2 * 86_400, rows)).round()
    x = np.column_stack([time, v, amount.round(2)])
    return feature_names(), x, y


def write_fraud_csv(
    path: str | os.PathLike[str], rows: int = DEFAULT_ROWS, *, fraud_rate: float = FRAUD_RATE, seed: int = 0
) -> Path:
    """Write the table to ``path`` (atomically; an existing file is an error); return the path."""
    path = Path(path)
    if path.exists():
        raise ConfigError(f"path={path} exists; choose a new file (an existing file is never overwritten)")
    header, x, y = make_fraud_table(rows, fraud_rate=fraud_rate, seed=seed)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*header, LABEL])
    for row, label in zip(x, y, strict=True):
        writer.writerow([f"{row[0]:.0f}", *(f"{v:.6f}" for v in row[1:-1]), f"{row[-1]:.2f}", int(label)])
    atomic_write_text(path, buf.getvalue())
    return path
