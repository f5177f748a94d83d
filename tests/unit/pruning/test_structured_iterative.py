"""Iterative structured prune / fine-tune: smaller models per step, collapse stop, replay and resumption."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pruneguard.models import create_model
from pruneguard.pruning.structured import channel_widths
from pruneguard.pruning.structured_iterative import channel_sparsity, prune_finetune_structured, replay_channel_plans

X = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0, :4].mean((1, 2)) > X[:, 0, 4:].mean((1, 2))).long()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return create_model(
        "small_cnn", num_classes=2, input_shape=(1, 8, 8), mean=(0.5,), std=(0.3,), width=0.25, hidden=8
    )


def _finetune(model: nn.Module) -> None:
    model.train()
    grads = torch.autograd.grad(F.cross_entropy(model(X), Y), list(model.parameters()))
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads, strict=True):
            p.sub_(0.05 * g)
    model.eval()


def _evaluate(model: nn.Module) -> dict[str, float]:
    with torch.no_grad():
        return {"clean_accuracy": float((model.eval()(X).argmax(1) == Y).float().mean())}


def test_steps_remove_channels_and_replay_rebuilds_the_model(tmp_path: Path) -> None:
    dense = _model().eval()
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    small, results, plans = prune_finetune_structured(
        dense, [0.25, 0.5], X[:2], _finetune, _evaluate, state_dir=tmp_path
    )
    assert [r.step for r in results] == [0, 1, 2] and len(plans) == 2
    assert results[2].achieved_sparsity == channel_sparsity(channel_widths(dense), small) > 0.4
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in dense.parameters())
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())  # input untouched
    rebuilt = replay_channel_plans(_model(), plans, X[:2])
    rebuilt.load_state_dict(small.state_dict())
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(X), small(X))
    again, res2, _ = prune_finetune_structured(
        _model().eval(), [0.25, 0.5], X[:2], _finetune, _evaluate, state_dir=tmp_path, resume=True
    )
    assert [r.metrics for r in res2] == [r.metrics for r in results]
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), small.state_dict().values(), strict=True))


def test_collapse_stops_and_keeps_the_last_good_model() -> None:
    dense = _model().eval()
    calls = iter([{"clean_accuracy": 0.9}, {"clean_accuracy": 0.88}, {"clean_accuracy": 0.5}])
    kept, results, plans = prune_finetune_structured(
        dense, [0.25, 0.5, 0.75], X[:2], lambda m: None, lambda m: next(calls), max_acc_drop=0.05
    )
    assert [r.collapsed for r in results] == [False, False, True] and len(plans) == 1
    assert "max_acc_drop" in (results[2].reason or "")
    assert channel_widths(kept) == plans[0].remaining
