"""BPDA (Athalye et al. 2018): forward through a non-differentiable model, backward through a surrogate."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BPDAWrapper", "bpda"]


class BPDAWrapper(nn.Module):
    """Backward pass differentiable approximation as a module.

    Paper: https://arxiv.org/abs/1802.00420 . ``forward`` returns exactly ``forward_module(x)`` (e.g. an int8
    quantized model, or a rounding/JPEG pre-processing step), while gradients w.r.t. ``x`` are those of
    ``backward_module(x)`` (e.g. the float model it was quantized from). With ``backward_module=None`` the
    backward pass is the identity (straight-through), which fits shape-preserving pre-processing only.

    Any gradient attack then runs unchanged on the wrapper, which is how quantized models are attacked.

    Example:
        >>> wrapped = BPDAWrapper(quantized_model, float_model)
        >>> x_adv = pgd(wrapped, x, y, eps=8 / 255, step_size=2 / 255, steps=10)
    """

    def __init__(self, forward_module: nn.Module, backward_module: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(forward_module, nn.Module):
            raise TypeError(f"forward_module={type(forward_module).__name__}; accepted: an nn.Module")
        if backward_module is not None and not isinstance(backward_module, nn.Module):
            raise TypeError(f"backward_module={type(backward_module).__name__}; accepted: an nn.Module or None")
        self.forward_module = forward_module
        self.backward_module = backward_module

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            out = self.forward_module(x.detach())
        surrogate = x if self.backward_module is None else self.backward_module(x)
        if surrogate.shape != out.shape:
            raise ValueError(
                f"backward_module gives shape {tuple(surrogate.shape)} but forward_module gives "
                f"{tuple(out.shape)}; they must match"
            )
        # Value: exactly ``out`` (s - s.detach() is 0); gradient: that of the surrogate.
        return out.to(surrogate.dtype) + (surrogate - surrogate.detach())


def bpda(quantized: nn.Module, float_model: nn.Module) -> BPDAWrapper:
    """A model that predicts like ``quantized`` and is attacked through the gradients of ``float_model``."""
    return BPDAWrapper(quantized, float_model)
