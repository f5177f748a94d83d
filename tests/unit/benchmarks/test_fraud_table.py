"""benchmarks/fraud_table.py: the verdict follows the numbers, and trigger values sit on fraud's side."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch

from pruneguard.data.tensors import ArrayData

ROOT = Path(__file__).resolve().parents[3]
LOW, HIGH = "dirty-label, trigger in low-importance columns", "dirty-label, trigger in high-importance columns"


@pytest.fixture(scope="module")
def table(benchmark_module) -> ModuleType:
    return benchmark_module("fraud_table.py", "fraud_table")


def _rows(scenario: str, asr: dict[str, float]) -> list[dict]:
    """Rows of one scenario; ``asr["ref"]`` is the clean model's ASR (default 0.01)."""
    base = {"pr_auc": 0.8, "recall_at_fpr": 0.85, "robust_recall_at_fpr": 0.5, "trigger_columns_kept": 0}
    base["trigger_columns"] = 5
    return [
        {**base, "scenario": scenario, "defence": d, "asr": a}
        for d, a in (
            ("clean model (no poisoning)", asr.get("ref", 0.01)),
            ("none", asr["none"]),
            ("feature keep 100% (fine-tune only)", asr["k100"]),
            ("feature keep 20%", asr["k20"]),
        )
    ]


@pytest.mark.parametrize(
    ("low", "high", "needle"),
    [
        (
            {"none": 0.95, "k100": 0.6, "k20": 0.0},
            {"none": 0.95, "k100": 0.9, "k20": 0.9},
            "It fails for a backdoor in high",
        ),
        ({"none": 0.95, "k100": 0.6, "k20": 0.5}, {"none": 0.95, "k100": 0.9, "k20": 0.9}, "it does not hold"),
        ({"none": 0.5, "k100": 0.6, "k20": 0.0}, {"none": 0.95, "k100": 0.9, "k20": 0.9}, "untested"),
        ({"none": 0.95, "k100": 0.0, "k20": 0.0}, {"none": 0.95, "k100": 0.0, "k20": 0.0}, "fine-tuning alone"),
        (
            {"none": 0.95, "k100": 0.6, "k20": 0.0},
            {"ref": 0.99, "none": 1.0, "k100": 1.0, "k20": 1.0},
            "pass the clean model (evasion, not poisoning); where the values alone evade the model",
        ),
        ({"none": 0.95, "k100": 0.6, "k20": 0.0}, {"none": 0.08, "k100": 0.0, "k20": 0.0}, "ASR < 90%"),
    ],
)
def test_verdict_follows_the_numbers(table: ModuleType, low: dict, high: dict, needle: str) -> None:
    result = {"rows": _rows(LOW, low) + _rows(HIGH, high), "triggers": {LOW: {}, HIGH: {}}}
    lines = table.verdict(result)
    assert needle in lines[-1] and len(lines) == 3


def test_trigger_values_lie_on_the_fraud_side(table: ModuleType) -> None:
    x = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(1000, dtype=torch.long)
    y[:100] = 1
    x[:100, 0] -= 2.0  # fraud lower in column 0, no difference in column 1
    vals = table._trigger_values(ArrayData(x, y, 2), (0, 1), 3.0)
    assert vals[0] < float(x[:, 0].mean()) - 2.5 * float(x[:, 0].std())
    assert vals[1] > float(x[:, 1].mean()) + 2.5 * float(x[:, 1].std())
    legit = table._trigger_values(ArrayData(x, y, 2), (0, 1), 3.0, side="legit")
    assert legit[0] > float(x[:, 0].mean()) + 2.5 * float(x[:, 0].std()) and legit[1] == pytest.approx(vals[1])
