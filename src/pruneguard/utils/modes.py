"""Context managers that restore a model's flags (and its memory layout)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

from pruneguard.errors import ConfigError

__all__ = ["eval_mode", "frozen", "anp_mode", "fast_layout", "layout_setting", "LAYOUT_ENV", "LAYOUTS"]

# PyTorch's CPU max pooling is about ten times slower on NCHW tensors than on channels_last ones, and the
# convolutions of a frozen network's forward and input-gradient passes gain too: ``benchmarks/layout.py`` times the
# library's loops in both layouts. The loops whose weights stay fixed (trigger reversal, ANP's mask search, the
# sensitivity scan, prediction, evasion attacks) run in channels_last; training does not (its weight gradients
# gain nothing there). ``PRUNEGUARD_LAYOUT=default`` keeps PyTorch's layout everywhere.
LAYOUT_ENV = "PRUNEGUARD_LAYOUT"
LAYOUTS = ("channels_last", "default")
# Norms kept out of channels_last: GroupNorm's CPU backward on channels_last input crashes the process (torch
# 2.13, under ANP's perturbed scales), and instance/layer norms over images gain nothing measured.
_SLOW_NORMS = (nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)
# Modules whose forward is known to be layout-agnostic. A user's class may ``x.view(n, -1)`` its activations (the
# PyTorch tutorial's LeNet does), which fails on channels_last tensors: such models keep PyTorch's layout.
_KNOWN_FORWARDS = ("torch.nn.", "pruneguard.")


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


def layout_setting() -> str:
    """``PRUNEGUARD_LAYOUT`` (unset: ``channels_last``); another value is a ``ConfigError`` naming it."""
    value = os.environ.get(LAYOUT_ENV, LAYOUTS[0])
    if value not in LAYOUTS:
        raise ConfigError(f"{LAYOUT_ENV}={value!r} is not accepted; accepted: {', '.join(LAYOUTS)}")
    return value


@contextlib.contextmanager
def fast_layout(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with a convolutional ``model`` on the CPU in the channels_last memory layout, and restore
    the usual layout after. Values are not changed, only strides: the same ``Parameter`` objects are kept (an
    optimiser holding them stays valid), inputs may stay NCHW (a convolution with channels_last weights returns
    channels_last activations), and a model that is already channels_last, has no ``Conv2d``, has a norm other
    than BatchNorm, has a module defined outside torch.nn and pruneguard (its forward may ``view`` activations),
    is not on the CPU or runs with ``PRUNEGUARD_LAYOUT=default`` is left as it is (so nested blocks convert
    once)."""
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    if (
        layout_setting() == "default"
        or not convs
        or any(isinstance(m, _SLOW_NORMS) for m in model.modules())
        or not all(type(m).__module__.startswith(_KNOWN_FORWARDS) for m in model.modules())
        or convs[0].device.type != "cpu"
        or all(w.is_contiguous(memory_format=torch.channels_last) for w in convs if w.shape[1] > 1)
    ):
        yield model
        return
    _relayout(model, torch.channels_last)
    try:
        yield model
    finally:
        _relayout(model, torch.contiguous_format)


def _relayout(model: nn.Module, layout: torch.memory_format) -> None:
    """Every 4-D parameter and buffer of ``model`` in ``layout``, in place (the tensor objects are kept)."""
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            if t.dim() == 4:
                t.data = t.data.to(memory_format=layout)  # restrides one-channel weights too (contiguous() would not)
