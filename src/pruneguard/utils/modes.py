"""Context managers that restore a model's flags."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["eval_mode", "frozen"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore every submodule's ``training`` flag after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, t in flags:
            m.training = t


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Turn off ``requires_grad`` on every parameter for the block; restore it after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, r in flags:
            p.requires_grad_(r)


@contextlib.contextmanager
def anp_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Train mode with BatchNorm on batch statistics that leave the running buffers untouched, weights frozen.

    This is the mode of ANP's reference code (``model.train()``) without its side effect on running stats.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracked = [(m, m.track_running_stats) for m in norms]
    with frozen(model):
        flags = [(mod, mod.training) for mod in model.modules()]
        model.train()
        for m in norms:
            m.track_running_stats = False
        try:
            yield model
        finally:
            for m, t in tracked:
                m.track_running_stats = t
            for mod, t in flags:
                mod.training = t
