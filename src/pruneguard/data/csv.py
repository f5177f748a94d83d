"""Tabular data from a CSV file: one header row, numeric feature columns, one label column.

Features come back raw (float32 ``(N, F)``); standardisation lives inside the model (its ``Normalize`` layer
gets the training mean/std). Labels may be numbers or strings; the sorted distinct values become classes
``0..K-1`` (their text is kept as the class names). The train/test split is stratified and seeded.

Example:
    >>> train, test, features = load_csv("fraud.csv", "is_fraud", test_fraction=0.2, seed=0)
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import torch

from pruneguard.data.splits import stratified_sample
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError

__all__ = ["load_csv", "MIN_ROWS"]

MIN_ROWS = 10  # fewer rows cannot give a training split, a test split and a defender's split
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise ConfigError(f"--csv={path} does not exist or is not a file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"--csv={path} is not a readable UTF-8 CSV file: {exc}") from None
    if len(rows) < 2:
        raise ConfigError(f"--csv={path} needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ConfigError(f"--csv={path}: line {i} has {len(row)} fields but the header has {len(header)}")
    return header, rows[1:]


def _number(text: str, column: str, line: int, path: Path) -> float:
    try:
        value = float(text)
    except ValueError:
        if not text.strip():
            raise ConfigError(f"--csv={path}: column {column!r}, line {line} is empty (missing values: NaN)") from None
        raise ConfigError(f"--csv={path}: column {column!r}, line {line} holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"--csv={path}: column {column!r}, line {line} holds {text!r} (NaN/inf is not accepted)")
    if abs(value) > _FLOAT32_MAX:
        raise ConfigError(
            f"--csv={path}: column {column!r}, line {line} holds {text!r}; accepted: |value| <= {_FLOAT32_MAX:.4g} "
            "(float32)"
        )
    return value


def _labels(values: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class ids from label texts: numeric labels sort numerically, others as text."""
    distinct = sorted(set(values))
    try:
        distinct = sorted(distinct, key=float)
    except ValueError:
        pass
    index = {v: i for i, v in enumerate(distinct)}
    return np.array([index[v] for v in values], dtype=np.int64), tuple(distinct)


def load_csv(
    path: str | os.PathLike[str], label: str, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[ArrayData, ArrayData, list[str]]:
    """Read ``path``; return (train, test, feature names). Every problem is a one-line ``ConfigError``.

    Args:
        path: CSV file with a header row.
        label: the label column's name; every other column is a numeric feature.
        test_fraction: share of rows (per class) in the test split, in (0, 1).
        seed: seed of the stratified split.
    """
    path = Path(path)
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"--test-fraction={test_fraction} is outside (0, 1)")
    header, rows = _rows(path)
    if label not in header:
        shown = ", ".join(header[:10]) + (", ..." if len(header) > 10 else "")
        raise ConfigError(f"--label={label!r} is not a column of {path}; columns: {shown}")
    if len(set(header)) != len(header):
        raise ConfigError(f"--csv={path} has duplicate column names")
    li = header.index(label)
    features = [h for i, h in enumerate(header) if i != li]
    if not features:
        raise ConfigError(f"--csv={path} has no feature columns besides --label={label!r}")
    x = np.array(
        [
            [_number(r[i], header[i], line, path) for i in range(len(header)) if i != li]
            for line, r in enumerate(rows, 2)
        ],
        dtype=np.float64,
    )
    if len(rows) < MIN_ROWS:
        raise ConfigError(f"--csv={path} has {len(rows)} data rows; accepted: at least {MIN_ROWS}")
    texts = [r[li].strip() for r in rows]
    empty = next((line for line, t in enumerate(texts, 2) if not t), None)
    if empty is not None:
        raise ConfigError(f"--csv={path}: the --label={label!r} cell of line {empty} is empty; every row needs a label")
    constant = [f for f, col in zip(features, x.T, strict=True) if bool(np.all(col == col[0]))]
    if constant:
        raise ConfigError(
            f"--csv={path}: column {constant[0]!r} holds the same value in every row (it carries no information and "
            "cannot be standardised); drop it"
        )
    y, classes = _labels(texts)
    if len(classes) < 2:
        raise ConfigError(f"--label={label!r} has {len(classes)} class ({classes[0]!r}); at least 2 are needed")
    counts = np.bincount(y, minlength=len(classes))
    if int(counts.min()) < 2:
        rare = classes[int(counts.argmin())]
        raise ConfigError(
            f"--label={label!r}: class {rare!r} has {int(counts.min())} row; accepted: at least 2 per class"
        )
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)
    n_test = max(1, int(round(test_fraction * len(yt))))
    if n_test >= len(yt) - 1:
        raise ConfigError(f"--csv={path} has {len(yt)} rows: too few for a test split of {test_fraction}")
    test_idx = stratified_sample(yt, n_test, generator=torch.Generator().manual_seed(seed))
    keep = torch.ones(len(yt), dtype=torch.bool)
    keep[test_idx] = False
    k = len(classes)
    train = ArrayData(xt[keep], yt[keep], k, f"{path.stem}:train", classes)
    test = ArrayData(xt[test_idx], yt[test_idx], k, f"{path.stem}:test", classes)
    return train, test, features
