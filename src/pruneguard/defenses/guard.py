"""The guard of a repair: scale a repair's weight change back until the model stays within its limits.

A repair (fine-tuning, unlearning) moves the pruned model's weights from ``start`` to ``end``. When the repaired
model leaves the limits on validation data (``purify``: its accuracy falls too far below the original's, or it
takes too many of the suspected class's images away from that class), the guard tries the points
``start + s (end − start)`` for decreasing ``s`` and keeps the first that fits; ``s = 0`` undoes the repair.
Floating-point buffers (BatchNorm statistics) move along the same line; integer buffers take the end's values
(``s`` > 0) or the start's. Pruned weights are zero at both ends and stay zero. On networks with BatchNorm the
intermediate points are working models; on networks without it (plain or GroupNorm CNNs of the development zoo)
they can be worse than both ends, and ``purify`` retries the repair at a lower learning rate instead
(``repair.retries``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["interpolate_state", "weaken_to_fit", "WEAKEN_SCALES"]

WEAKEN_SCALES: tuple[float, ...] = (0.75, 0.5, 0.25, 0.0)


def interpolate_state(start: Mapping[str, Tensor], end: Mapping[str, Tensor], s: float) -> dict[str, Tensor]:
    """``start + s (end − start)`` for floating-point tensors; other tensors from ``end`` if ``s`` > 0, else
    ``start``."""
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"s={s} is outside [0, 1]")
    if set(start) != set(end):
        raise ValueError("start and end hold different tensors; accepted: two states of one model")
    out: dict[str, Tensor] = {}
    for k, a in start.items():
        b = end[k]
        out[k] = torch.lerp(a, b, s) if a.is_floating_point() else (b if s > 0 else a).clone()
    return out


@torch.no_grad()
def weaken_to_fit(
    model: nn.Module,
    start: Mapping[str, Tensor],
    measure: Callable[[nn.Module], dict[str, float]],
    fits: Callable[[Mapping[str, float]], bool],
    *,
    scales: Sequence[float] = WEAKEN_SCALES,
) -> dict[str, Any]:
    """Keep ``model`` (the repaired end point) if ``fits(measure(model))``; else load the first point towards
    ``start`` (the state before the repair) that fits, or ``start`` itself. ``measure`` gives a model's figures
    on validation data (e.g. its accuracy), ``fits`` says whether they are within the limits. Modifies ``model``
    in place; returns the scale kept (1: the full repair, 0: undone) and the figures of every point tried."""
    end = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tried = [{"scale": 1.0, **measure(model)}]
    if fits(tried[0]):
        return {"scale": 1.0, "tried": tried}
    for s in scales:
        model.load_state_dict(interpolate_state(start, end, s))
        tried.append({"scale": s, **measure(model)})
        if fits(tried[-1]) or s == 0.0:
            return {"scale": s, "tried": tried}
    model.load_state_dict(dict(start))
    return {"scale": 0.0, "tried": tried}
