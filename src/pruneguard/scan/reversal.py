"""Trigger reversal (Neural Cleanse, Wang et al. 2019): a suspect finder.

For a suspected target class ``t``, find the smallest mask ``m`` (``1×H×W`` in [0, 1]) and pattern ``p``
(``C×H×W`` in [0, 1]) such that stamping clean images, ``x' = (1 − m)·x + m·p``, sends them to ``t``: minimise
``CE(f(x'), t) + cost·|m|₁`` with Adam on tanh-parametrised ``m`` and ``p``, raising ``cost`` while the stamp
succeeds on ≥ ``success`` of a batch and lowering it while it does not (the paper's schedule). Only the
defender's clean data is used; the trigger is never known. :func:`reversal_scan` reverses a trigger to every
class and suspects the one that needs the smallest; :func:`pruneguard.defenses.unlearning.unlearn_` fine-tunes
a reversed trigger away.

``kind="blend"`` (not in Neural Cleanse) reverses a whole-image trigger instead of a patch: the mask is one scalar
``a`` for every pixel, ``x' = (1 − a)·x + a·p``, the form of the Blend attack (and, for small ``a``, of additive
signals such as SIG). A patch-shaped mask fits such triggers badly: the smallest patch that flips a model to
the target need not be the backdoor's shortcut. Its "L1" is ``a·H·W`` so both kinds report a comparable share.

``kind="warp"`` reverses a smooth warp instead of a stamp, the form of WaNet (Nguyen & Tran 2021), whose trigger
no stamp reproduces: a displacement field ``(2, H, W)`` in pixels, bicubically upsampled from a ``WARP_GRID`` ×
``WARP_GRID`` grid of control points (WaNet's ``k``), every pixel of ``x`` resampled where the field moves it; its
size is the mean absolute displacement (pixels; a warp that never reaches the success rate: that over the share of
images it sends to the target) and its "L1" that size times ``H·W``, so ``mask_share`` reads in pixels. On
WaNet models of the development zoo the target is reached by a warp of a fraction of a pixel where the other
classes, and every class of the reference model, need several.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.backdoor.triggers import displace, stamp
from pruneguard.data.tensors import ArrayData, iterate_batches, to_float
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_asr
from pruneguard.utils.modes import eval_mode, fast_layout, frozen
from pruneguard.utils.progress import track

__all__ = [
    "ReversalConfig",
    "ReversedTrigger",
    "reverse_trigger",
    "reversal_scan",
    "restrict_kinds",
    "scan_config",
    "SCAN_STEPS",
    "TRIGGER_KINDS",
    "REVERSAL_KINDS",
    "WARP_GRID",
]

TRIGGER_KINDS = ("patch", "blend")  # the stamps
REVERSAL_KINDS = (*TRIGGER_KINDS, "warp")  # every kind reverse_trigger takes
WARP_GRID = 4  # control points per side of a reversed warp (WaNet's k)
# Adam's step and the first weight of the size (mean displacement, pixels) for a warp: its size is in pixels, a
# patch's in pixels covered, so the stamp's settings do not carry over
WARP_LR, WARP_INIT_COST = 0.05, 1e-2
SCAN_STEPS = 150  # reversal steps per class in reversal_scan: it only ranks classes, no stamp is kept

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReversalConfig:
    """Settings of the reversal: ``steps`` Adam steps (``lr``) on batches of ``batch_size`` non-target clean
    images; the L1 weight starts at ``init_cost`` and is multiplied (divided by its 1.5th power) by
    ``cost_factor`` after ``patience`` steps in a row at (below) the ``success`` rate."""

    steps: int = 600
    batch_size: int = 128
    lr: float = 0.1
    init_cost: float = 1e-3
    success: float = 0.99
    patience: int = 10
    cost_factor: float = 1.5

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps} must be >= 1")
        if not 0 < self.success <= 1:
            raise ConfigError(f"success={self.success} must be in (0, 1]")


@dataclass(frozen=True)
class ReversedTrigger:
    """The smallest successful trigger found: ``mask`` (1×H×W), ``pattern`` (C×H×W), both in [0, 1]; for a
    warp, ``flow`` (2×H×W, pixels), with the displacement's length over its largest as ``mask`` (a picture of
    where the warp acts) and a zero ``pattern``. :meth:`apply` puts the trigger on images."""

    target: int
    mask: Tensor
    pattern: Tensor
    success_rate: float
    mask_l1: float
    seconds: float
    kind: str = "patch"
    flow: Tensor | None = None

    def apply(self, x: Tensor) -> Tensor:
        """Float images ``(N, C, H, W)`` in [0, 1] with the trigger on: stamped, or warped by ``flow``."""
        if self.flow is not None:
            return displace(x, self.flow)
        return stamp(x, self.mask.to(x.device), self.pattern.to(x.device))

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "kind": self.kind,
            "target": self.target,
            "success_rate": self.success_rate,
            "mask_l1": self.mask_l1,
            "mask_share": self.mask_l1 / self.mask.numel(),
            "seconds": self.seconds,
        }


def scan_config(batch_size: int = 128) -> ReversalConfig:
    """The reversal settings of :func:`reversal_scan` as purify runs it (``SCAN_STEPS`` steps per class), for
    every reversal whose trigger sizes are compared with the scan's (purify's reference tie-break, the
    benchmarks)."""
    return ReversalConfig(steps=SCAN_STEPS, batch_size=batch_size)


def reverse_trigger(
    model: nn.Module,
    data: ArrayData,
    target: int,
    config: ReversalConfig = ReversalConfig(),
    *,
    generator: torch.Generator | None = None,
    progress: bool = False,
    kind: str = "patch",
) -> ReversedTrigger:
    """Optimise a stamp that sends non-target clean images of ``data`` to ``target``; the model is not changed.

    ``kind``: ``"patch"`` (a per-pixel mask, Neural Cleanse), ``"blend"`` (one blending weight for all pixels) or
    ``"warp"`` (a smooth displacement field, see the module docstring).
    """
    if kind not in REVERSAL_KINDS:
        raise ConfigError(f"kind={kind!r} is not accepted; accepted: {', '.join(REVERSAL_KINDS)}")
    if data.x.dim() != 4:
        raise ConfigError(f"trigger reversal needs images (N, C, H, W); got data of shape {tuple(data.x.shape)}")
    if not 0 <= target < data.num_classes:
        raise ConfigError(f"target={target} is outside [0, {data.num_classes - 1}]")
    others = data.subset(torch.nonzero(data.y != target).flatten())
    if len(others) == 0:
        raise ConfigError(f"the clean split has no image outside class {target} to reverse a trigger on")
    device = next(model.parameters()).device
    gen = generator or torch.Generator().manual_seed(0)
    if kind == "warp":
        return _reverse_warp(model, others, target, config, gen, device, progress)
    _, c, h, w = data.x.shape
    m_shape = (1, h, w) if kind == "patch" else (1, 1, 1)
    m_raw = (torch.rand(m_shape, generator=gen) * 2 - 1).mul_(0.5).to(device).requires_grad_(True)
    p_raw = (torch.rand(c, h, w, generator=gen) * 2 - 1).mul_(0.5).to(device).requires_grad_(True)
    opt = torch.optim.Adam([m_raw, p_raw], lr=config.lr, betas=(0.5, 0.9))
    cost, up, down = config.init_cost, 0, 0
    best: tuple[float, Tensor, Tensor] | None = None
    t0 = time.perf_counter()
    with frozen(model), eval_mode(model), fast_layout(model):
        batches = _cycle(others, config.batch_size, gen, device)
        for _ in track(range(config.steps), desc=f"reverse trigger -> {target}", enabled=progress):
            x = next(batches)
            mask, pattern = (torch.tanh(m_raw) + 1) / 2, (torch.tanh(p_raw) + 1) / 2
            logits = model(stamp(x, mask, pattern))
            ce = F.cross_entropy(logits, torch.full_like(logits[:, 0], target, dtype=torch.long))
            l1 = mask.sum() * (h * w / mask.numel())
            opt.zero_grad(set_to_none=True)
            (ce + cost * l1).backward()
            opt.step()
            rate = float((logits.argmax(1) == target).float().mean())
            if rate >= config.success and (best is None or float(l1.detach()) < best[0]):
                best = (float(l1.detach()), mask.detach().clone(), pattern.detach().clone())
            cost, up, down = _schedule(cost, up, down, rate >= config.success, config)
    if best is None:  # never reached the success rate: keep the last stamp and say how well it does
        mask, pattern = ((torch.tanh(t) + 1) / 2 for t in (m_raw.detach(), p_raw.detach()))
        best = (float(mask.sum()) * h * w / mask.numel(), mask, pattern)
    best_l1, best_pattern = best[0], best[2].cpu()
    best_mask = best[1].cpu().expand(1, h, w).contiguous()
    stamped = ArrayData(stamp(to_float(others.x), best_mask, best_pattern), others.y, others.num_classes)
    rate = evaluate_asr(model, stamped, target)  # all of ``others`` is outside the target class
    seconds = time.perf_counter() - t0
    logger.info("reversed %s trigger -> %d: |m|_1 %.1f, success %.3f (%.1fs)", kind, target, best_l1, rate, seconds)
    return ReversedTrigger(target, best_mask, best_pattern, rate, best_l1, seconds, kind)


def _schedule(cost: float, up: int, down: int, ok: bool, config: ReversalConfig) -> tuple[float, int, int]:
    """Neural Cleanse's schedule of the size's weight after one step: raised by ``cost_factor`` after ``patience``
    successful steps in a row, lowered by its 1.5th power after as many failing ones; (cost, up, down)."""
    up, down = (up + 1, 0) if ok else (0, down + 1)
    if up >= config.patience:
        return cost * config.cost_factor, 0, down
    if down >= config.patience:
        return cost / config.cost_factor**1.5, up, 0
    return cost, up, down


def _flow(theta: Tensor, h: int, w: int) -> Tensor:
    """The displacement field ``(2, H, W)`` (pixels) of a grid of control points ``(1, 2, k, k)``."""
    return F.interpolate(theta, size=(h, w), mode="bicubic", align_corners=True)[0]


def _reverse_warp(
    model: nn.Module,
    others: ArrayData,
    target: int,
    config: ReversalConfig,
    gen: torch.Generator,
    device: torch.device,
    progress: bool,
) -> ReversedTrigger:
    """:func:`reverse_trigger` for ``kind="warp"``: the loop of the stamps (the size's weight raised while the warp
    succeeds, lowered while it does not) on the control points of a displacement field."""
    _, c, h, w = others.x.shape
    theta = (torch.rand(1, 2, WARP_GRID, WARP_GRID, generator=gen) * 2 - 1).mul_(0.1).to(device).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=WARP_LR, betas=(0.5, 0.9))
    cost, up, down = WARP_INIT_COST, 0, 0
    best: tuple[float, Tensor] | None = None
    t0 = time.perf_counter()
    with frozen(model), eval_mode(model), fast_layout(model):
        batches = _cycle(others, config.batch_size, gen, device)
        for _ in track(range(config.steps), desc=f"reverse warp -> {target}", enabled=progress):
            x = next(batches)
            flow = _flow(theta, h, w)
            logits = model(displace(x, flow))
            ce = F.cross_entropy(logits, torch.full_like(logits[:, 0], target, dtype=torch.long))
            spread = flow.abs().mean()
            opt.zero_grad(set_to_none=True)
            (ce + cost * spread).backward()
            opt.step()
            rate = float((logits.argmax(1) == target).float().mean())
            if rate >= config.success and (best is None or float(spread.detach()) < best[0]):
                best = (float(spread.detach()), flow.detach().clone())
            cost, up, down = _schedule(cost, up, down, rate >= config.success, config)
    reached = best is not None
    if best is None:  # never reached the success rate: keep the last warp and say how well it does
        flow = _flow(theta.detach(), h, w)
        best = (float(flow.abs().mean()), flow)
    size, flow = best[0], best[1].cpu()
    length = flow.norm(dim=0, keepdim=True)
    mask = length / length.max().clamp_min(1e-12)
    trig = ReversedTrigger(target, mask, torch.zeros(c, h, w), 0.0, size * h * w, 0.0, "warp", flow)
    warped = ArrayData(trig.apply(to_float(others.x)), others.y, others.num_classes)
    rate = evaluate_asr(model, warped, target)
    if not reached:
        # a warp that falls short counts as its size over the share of images it moves to the target: its
        # displacement alone would rank a class the optimiser gave up on as an easy one
        size /= max(rate, 1 / len(others))
    seconds = time.perf_counter() - t0
    logger.info("reversed warp -> %d: size %.3f px, success %.3f (%.1fs)", target, size, rate, seconds)
    return dataclasses.replace(trig, success_rate=rate, mask_l1=size * h * w, seconds=seconds)


def reversal_scan(
    model: nn.Module,
    data: ArrayData,
    config: ReversalConfig = ReversalConfig(steps=SCAN_STEPS),
    *,
    kinds: Sequence[str] = TRIGGER_KINDS,
    seed: int = 0,
) -> dict[str, Any]:
    """Neural Cleanse's detection: reverse a trigger to every class and suspect the one that needs the smallest.

    For each trigger kind: each class's trigger size (``mask_l1``), the smallest class and its anomaly index (the
    median's distance to it in units of 1.4826 * median absolute deviation; Neural Cleanse flags > 2), and every
    class's (``anomaly_by_class``; zeros when the deviation is 0). The kind
    whose smallest class stands out most decides ``suspected_target``: a patch fits patch triggers (BadNets)
    and a whole-image blend fits blended or additive ones (Blend, SIG), and each names the other's target badly.
    """
    t0 = time.perf_counter()
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        sizes = [
            reverse_trigger(model, data, c, config, generator=torch.Generator().manual_seed(seed), kind=kind).mask_l1
            for c in range(data.num_classes)
        ]
        l1 = torch.tensor(sizes)
        median = float(torch.quantile(l1, 0.5))  # the mean of the two middle values for an even count
        mad = 1.4826 * float(torch.quantile((l1 - median).abs(), 0.5))
        low = int(l1.argmin())
        anomaly = (median - float(l1[low])) / mad if mad > 0 else float("inf")
        per_kind[kind] = {
            "mask_l1": sizes,
            "suspected_target": low,
            "anomaly_index": anomaly,
            "anomaly_by_class": ((median - l1) / mad).tolist() if mad > 0 else [0.0] * len(sizes),
        }
    return restrict_kinds({"kinds": per_kind, "steps": config.steps, "seconds": time.perf_counter() - t0}, kinds)


def restrict_kinds(scan: dict[str, Any], kinds: Sequence[str]) -> dict[str, Any]:
    """A :func:`reversal_scan` result as if it had reversed only ``kinds`` (those of them it did reverse): the
    kind whose smallest class stands out most among them decides again. Neural Cleanse's detector is a stamp's:
    a scan that also reversed a warp for another reader gives it back without one."""
    per_kind = {k: v for k, v in scan["kinds"].items() if k in kinds}
    if not per_kind:
        raise ValueError(f"the scan reversed {sorted(scan['kinds'])}, none of {list(kinds)}")
    kind = max(per_kind, key=lambda k: per_kind[k]["anomaly_index"])
    return {
        **scan,
        "kind": kind,
        "suspected_target": per_kind[kind]["suspected_target"],
        "anomaly_index": per_kind[kind]["anomaly_index"],
        "kinds": per_kind,
    }


def _cycle(data: ArrayData, batch_size: int, gen: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    while True:
        for x, _ in iterate_batches(data, batch_size, shuffle=True, generator=gen, device=device):
            yield x
