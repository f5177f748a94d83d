"""CSV loading: numeric features, string or numeric labels, a stratified seeded split, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pruneguard.data.csv import load_csv
from pruneguard.errors import ConfigError


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def good(tmp_path: Path) -> Path:
    rows = ["amount,age,label,score"]
    rows += [f"{i * 1.5},{20 + i % 7},{'fraud' if i % 4 == 0 else 'ok'},{-i / 10}" for i in range(40)]
    return _write(tmp_path / "tx.csv", rows)


def test_load_csv_splits_stratified_and_keeps_raw_features(good: Path) -> None:
    train, test, names = load_csv(good, "label", test_fraction=0.25, seed=3)
    assert names == ["amount", "age", "score"]
    assert len(train) + len(test) == 40 and len(test) == 10
    assert train.classes == ("fraud", "ok") and train.num_classes == 2
    assert int((test.y == 0).sum()) in (2, 3)  # 10 of 40 rows are fraud: 2.5 of the 10 test rows
    assert train.x.dtype == torch.float32 and train.x.shape[1] == 3
    rows = torch.cat([train.x, test.x])
    assert sorted(rows[:, 0].tolist()) == [i * 1.5 for i in range(40)]  # raw values, every row once
    again = load_csv(good, "label", test_fraction=0.25, seed=3)[1]
    other = load_csv(good, "label", test_fraction=0.25, seed=4)[1]
    assert torch.equal(again.x, test.x) and not torch.equal(other.x, test.x)


def test_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    path = _write(tmp_path / "n.csv", ["f,y"] + [f"{i},{[2, 10, 1][i % 3]}" for i in range(12)])
    train, _, _ = load_csv(path, "y", test_fraction=0.25)
    assert train.classes == ("1", "2", "10")


@pytest.mark.parametrize(
    "lines,label,needle",
    [
        (["a,b", "1,0", "2,1"], "target", "--label='target' is not a column"),
        (["a,b", "1,0", "x,1", "2,0"], "b", "column 'a', line 3 holds 'x', not a number"),
        (["a,b", "1,0", ",1", "2,0"], "b", "column 'a', line 3 is empty"),
        (["a,b", "1,0", "nan,1", "2,0"], "b", "NaN/inf is not accepted"),
        (["a,b"] + [f"{i},0" for i in range(12)], "b", "at least 2 are needed"),
        (["a,b", "1,0", "2,1", "3,0"], "b", "has 3 data rows; accepted: at least 10"),
        (["a,c,b"] + [f"{i},7,{i % 2}" for i in range(12)], "b", "column 'c' holds the same value in every row"),
        (["a,b"] + [f"{i},{i % 2}" for i in range(11)] + ["5,"], "b", "cell of line 13 is empty"),
        (["a,b"] + [f"{i},{i % 2}" for i in range(11)] + ["1e39,1"], "b", "holds '1e39'; accepted: |value| <="),
        (["a,b"] + [f"{i},{i % 2}" for i in range(11)] + ["5,2"], "b", "class '2' has 1 row"),
        (["a,b", "1,0", "2,1,3"], "b", "line 3 has 3 fields"),
        (["a,b"], "b", "at least one data row"),
        (["b", "0", "1"], "b", "no feature columns"),
    ],
)
def test_bad_csv_files_give_one_line_errors(tmp_path: Path, lines: list[str], label: str, needle: str) -> None:
    path = _write(tmp_path / "bad.csv", lines)
    with pytest.raises(ConfigError) as info:
        load_csv(path, label)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_bad_fraction(tmp_path: Path, good: Path) -> None:
    with pytest.raises(ConfigError, match="--csv=.*does not exist"):
        load_csv(tmp_path / "nope.csv", "label")
    with pytest.raises(ConfigError, match="--test-fraction"):
        load_csv(good, "label", test_fraction=1.0)
