"""Trigger reversal and unlearning (Neural Cleanse, Wang et al. 2019, its "unlearning" mitigation).

For a suspected target class ``t``, find the smallest mask ``m`` (``1×H×W`` in [0, 1]) and pattern ``p``
(``C×H×W`` in [0, 1]) such that stamping clean images, ``x' = (1 − m)·x + m·p``, sends them to ``t``: minimise
``CE(f(x'), t) + cost·|m|₁`` with Adam on tanh-parametrised ``m`` and ``p``, raising ``cost`` while the stamp
succeeds on ≥ ``success`` of a batch and lowering it while it does not (the paper's schedule). Then fine-tune on
the clean split plus stamped copies of 20% of it (the paper's share) that keep their *true* labels, so the model
unlearns the shortcut. Only the defender's clean data is used; the trigger is never known.

``kind="blend"`` (not in Neural Cleanse) reverses a whole-image trigger instead of a patch: the mask is one scalar
``a`` for every pixel, ``x' = (1 − a)·x + a·p``, the form of the Blend attack (and, for small ``a``, of additive
signals such as SIG). A patch-shaped mask fits such triggers badly: the smallest patch that flips a model to
the target need not be the backdoor's shortcut. Its "L1" is ``a·H·W`` so both kinds report a comparable share.

``distill`` > 0 (not in Neural Cleanse) adds a knowledge-distillation term on clean images of the split, with a
frozen ``teacher``: ``distill · T² · KL(softmax(teacher/T) ‖ softmax(student/T))``. ``purify`` passes the pruned
model as it was before the unlearning: the fine-tune on a few hundred images then stays near the pruned model's
clean behaviour instead of drifting. On the ANP table (Fashion-MNIST, 1% clean data) the unpruned, backdoored
model as teacher kept more accuracy but taught part of the backdoor back through its clean-image outputs (ASR
5.6% IAB, 2.4% SIG, 2.1% Trojan); the pruned model as teacher did not (BENCHMARKS.md,
``benchmarks/unlearn_variants.py``). Clean images only: on
stamped copies a backdoored teacher would teach the shortcut itself.

``adv_eps`` > 0 (not in Neural Cleanse; the per-image idea of adversarial unlearning, e.g. I-BAU and SAU, in its
simplest form) adds to every fine-tuning batch targeted L-inf PGD copies of its non-target images towards the
suspected class, computed on the model as it is at that step, with their true labels: a trigger that differs per
image (IAB, WaNet) is not one stamp, but the backdoor leaves a short path to the target from every image. On a
BadNets toy (digits) these copies alone, with no reversed stamp, took the ASR from 98% to 5% at ``eps`` 0.05
where a plain fine-tune left 89%.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.evasion.pgd import pgd
from pruneguard.data.augment import augment_batch
from pruneguard.data.tensors import ArrayData, iterate_batches, to_float
from pruneguard.defenses.fine_tune import fine_tune_, zero_masks
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_asr
from pruneguard.training.train import BatchHook, TrainConfig
from pruneguard.utils.modes import eval_mode, frozen
from pruneguard.utils.progress import track

__all__ = [
    "ReversedTrigger",
    "UnlearnConfig",
    "reverse_trigger",
    "reversal_scan",
    "stamp",
    "unlearn_",
    "distill_loss",
    "recalibrate_batchnorm_",
    "DistillHook",
    "TargetedAdversarialHook",
    "ChainHook",
    "TRIGGER_KINDS",
    "SCAN_STEPS",
    "scan_config",
]

TRIGGER_KINDS = ("patch", "blend")
SCAN_STEPS = 150  # reversal steps per class in reversal_scan: it only ranks classes, no stamp is kept

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UnlearnConfig:
    """Settings of the reversal (``steps`` Adam steps on batches of non-target clean images) and the unlearning."""

    steps: int = 600
    batch_size: int = 128
    lr: float = 0.1
    init_cost: float = 1e-3
    success: float = 0.99
    patience: int = 10
    cost_factor: float = 1.5
    epochs: int = 5
    finetune_lr: float = 0.01
    stamp_fraction: float = 0.2
    distill: float = 0.0
    temperature: float = 2.0
    distill_suppress: float = 0.0
    distill_augment: bool = False
    adv_eps: float = 0.0
    adv_steps: int = 5

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"--unlearn-steps={self.steps} must be >= 1")
        if not 0 < self.success <= 1:
            raise ConfigError(f"success={self.success} must be in (0, 1]")
        if not 0 < self.stamp_fraction <= 1:
            raise ConfigError(f"--unlearn-stamp-fraction={self.stamp_fraction} must be in (0, 1]")
        if self.epochs < 1:
            raise ConfigError(f"--unlearn-epochs={self.epochs} must be >= 1")
        if not self.finetune_lr > 0 or not math.isfinite(self.finetune_lr):
            raise ConfigError(f"--unlearn-lr={self.finetune_lr} must be a positive number")
        if not self.distill >= 0 or not math.isfinite(self.distill):
            raise ConfigError(f"--unlearn-distill={self.distill} must be a number >= 0")
        if not 0 <= self.distill_suppress <= 1:
            raise ConfigError(f"--unlearn-distill-suppress={self.distill_suppress} must be in [0, 1]")
        if not 0 <= self.adv_eps <= 1:
            raise ConfigError(f"--unlearn-adv-eps={self.adv_eps} must be in [0, 1] (images in [0, 1])")
        if self.adv_steps < 1:
            raise ConfigError(f"--unlearn-adv-steps={self.adv_steps} must be >= 1")
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise ConfigError(f"temperature={self.temperature} must be a positive number")


@dataclass(frozen=True)
class ReversedTrigger:
    """The smallest successful stamp found: ``mask`` (1×H×W), ``pattern`` (C×H×W), both in [0, 1]."""

    target: int
    mask: Tensor
    pattern: Tensor
    success_rate: float
    mask_l1: float
    seconds: float
    kind: str = "patch"

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "kind": self.kind,
            "target": self.target,
            "success_rate": self.success_rate,
            "mask_l1": self.mask_l1,
            "mask_share": self.mask_l1 / self.mask.numel(),
            "seconds": self.seconds,
        }


def stamp(x: Tensor, mask: Tensor, pattern: Tensor) -> Tensor:
    """``(1 − mask)·x + mask·pattern``: the Neural Cleanse trigger model (images in [0, 1])."""
    return (1 - mask) * x + mask * pattern


def scan_config(batch_size: int = 128) -> UnlearnConfig:
    """The reversal settings of :func:`reversal_scan` as purify runs it (``SCAN_STEPS`` steps per class), for
    every reversal whose trigger sizes are compared with the scan's (purify's reference tie-break, the
    benchmarks)."""
    return UnlearnConfig(steps=SCAN_STEPS, batch_size=batch_size)


def reverse_trigger(
    model: nn.Module,
    data: ArrayData,
    target: int,
    config: UnlearnConfig = UnlearnConfig(),
    *,
    generator: torch.Generator | None = None,
    progress: bool = False,
    kind: str = "patch",
) -> ReversedTrigger:
    """Optimise a stamp that sends non-target clean images of ``data`` to ``target``; the model is not changed.

    ``kind``: ``"patch"`` (a per-pixel mask, Neural Cleanse) or ``"blend"`` (one blending weight for all pixels).
    """
    if kind not in TRIGGER_KINDS:
        raise ConfigError(f"--unlearn-trigger={kind!r} is not accepted; accepted: {', '.join(TRIGGER_KINDS)}, both")
    if data.x.dim() != 4:
        raise ConfigError(f"trigger reversal needs images (N, C, H, W); got data of shape {tuple(data.x.shape)}")
    if not 0 <= target < data.num_classes:
        raise ConfigError(f"target={target} is outside [0, {data.num_classes - 1}]")
    others = data.subset(torch.nonzero(data.y != target).flatten())
    if len(others) == 0:
        raise ConfigError(f"the clean split has no image outside class {target} to reverse a trigger on")
    device = next(model.parameters()).device
    gen = generator or torch.Generator().manual_seed(0)
    _, c, h, w = data.x.shape
    m_shape = (1, h, w) if kind == "patch" else (1, 1, 1)
    m_raw = (torch.rand(m_shape, generator=gen) * 2 - 1).mul_(0.5).to(device).requires_grad_(True)
    p_raw = (torch.rand(c, h, w, generator=gen) * 2 - 1).mul_(0.5).to(device).requires_grad_(True)
    opt = torch.optim.Adam([m_raw, p_raw], lr=config.lr, betas=(0.5, 0.9))
    cost, up, down = config.init_cost, 0, 0
    best: tuple[float, Tensor, Tensor] | None = None
    t0 = time.perf_counter()
    with frozen(model), eval_mode(model):
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
            up, down = (up + 1, 0) if rate >= config.success else (0, down + 1)
            if up >= config.patience:
                cost, up = cost * config.cost_factor, 0
            elif down >= config.patience:
                cost, down = cost / config.cost_factor**1.5, 0
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


def reversal_scan(
    model: nn.Module,
    data: ArrayData,
    config: UnlearnConfig = UnlearnConfig(steps=SCAN_STEPS),
    *,
    kinds: Sequence[str] = TRIGGER_KINDS,
    seed: int = 0,
) -> dict[str, Any]:
    """Neural Cleanse's detection: reverse a trigger to every class and suspect the one that needs the smallest.

    For each trigger kind: each class's trigger size (``mask_l1``), the smallest class and its anomaly index (the
    median's distance to it in units of 1.4826 * median absolute deviation; Neural Cleanse flags > 2), and every
    class's (``anomaly_by_class``; zeros when the deviation is 0). The kind
    whose smallest class stands out most decides ``suspected_target``. On three Fashion-MNIST models the patch
    reversal named the BadNets target (anomaly 1.5) but not SIG's (it named class 8), the blend reversal named
    the Blend and SIG targets (2.2, 2.3) but not BadNets' (BENCHMARKS.md); the larger index was right each time.
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
    kind = max(per_kind, key=lambda k: per_kind[k]["anomaly_index"])
    return {
        "kind": kind,
        "suspected_target": per_kind[kind]["suspected_target"],
        "anomaly_index": per_kind[kind]["anomaly_index"],
        "kinds": per_kind,
        "steps": config.steps,
        "seconds": time.perf_counter() - t0,
    }


def _cycle(data: ArrayData, batch_size: int, gen: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    while True:
        for x, _ in iterate_batches(data, batch_size, shuffle=True, generator=gen, device=device):
            yield x


@torch.no_grad()
def recalibrate_batchnorm_(model: nn.Module, data: ArrayData, batch_size: int = 128) -> nn.Module:
    """Recompute every BatchNorm layer's running statistics on ``data`` (in place; the cumulative average over
    its batches, in order) and return ``model``, its ``training`` flags as they were.

    Pruning leaves the statistics of the dense model; on the ANP table's pruned models recomputing them on the
    1% clean split gave back about a point of accuracy (IAB 89.34 -> 90.34) but also part of the backdoor (ASR
    1.8 -> 5.0%): stale statistics carry part of what pruning suppresses. The recipe uses such a model only as
    the teacher of clean images (``purify --unlearn-teacher recalibrated``)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    device = next(model.parameters()).device
    with eval_mode(model):  # dropout and the like off; the norms alone in train mode, to record statistics
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average
                m.train()
            if norms:
                for x, _ in iterate_batches(data, batch_size, device=device):
                    model(x)
        finally:
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum
    return model


def distill_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``, batch mean (Hinton et al. 2015): the gradient keeps
    its size across temperatures."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="batchmean") * (t * t)


class _SeededHook:
    """A batch hook that learns nothing of its own; its state is its random generator's."""

    generator: torch.Generator

    def zero_grad(self) -> None:
        pass

    def step(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class DistillHook(_SeededHook):
    """A :class:`~pruneguard.training.train.BatchHook` that leaves each batch as it is and adds ``weight`` times
    :func:`distill_loss` of ``student`` against a frozen ``teacher`` on a random batch of ``clean`` images (the
    same size, drawn from ``generator``).

    With ``suppress`` (a class) and the images' ``labels``, the share ``suppress_share`` of the teacher's
    probability of that class is taken out (and the rest renormalised) on every image labelled otherwise: a
    backdoored teacher's leaning towards its target on clean images is the channel through which distillation
    teaches the backdoor back; its other classes' probabilities (what helps accuracy) are kept.

    With ``augment``, each drawn image batch is randomly cropped (padding 1) and flipped first (images only, from
    ``generator``): the student matches the teacher on more than the few hundred clean images themselves."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        clean: Tensor,
        weight: float,
        temperature: float,
        generator: torch.Generator,
        *,
        labels: Tensor | None = None,
        suppress: int | None = None,
        suppress_share: float = 1.0,
        augment: bool = False,
    ) -> None:
        if (labels is None) != (suppress is None):
            raise ConfigError("DistillHook: suppress and labels go together (the class and the clean images' labels)")
        if labels is not None and len(labels) != len(clean):
            raise ConfigError(f"DistillHook: labels has {len(labels)} entries; accepted: one per clean image")
        self.student, self.teacher, self.clean = student, teacher, clean
        self.weight, self.temperature, self.generator = weight, temperature, generator
        if not 0 <= suppress_share <= 1:
            raise ConfigError(f"DistillHook: suppress_share={suppress_share}; accepted: a share in [0, 1]")
        self.labels, self.suppress, self.augment = labels, suppress, augment
        # added to the class's logit: its probability times (1 - share), before renormalising
        self.shift = math.log1p(-suppress_share) if suppress_share < 1 else float("-inf")

    def batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        idx = torch.randint(len(self.clean), (x.shape[0],), generator=self.generator)
        cx = self.clean[idx].to(x.device)
        if self.augment:
            cx = augment_batch(cx, padding=1, hflip=True, generator=self.generator)
        with torch.no_grad():
            teacher = self.teacher(cx)
            if self.labels is not None and self.suppress is not None:
                other = (self.labels[idx] != self.suppress).to(x.device)
                teacher[other, self.suppress] += self.shift * self.temperature  # a share out, the rest renormalised
        return x, y, self.weight * distill_loss(self.student(cx), teacher, self.temperature)


class TargetedAdversarialHook(_SeededHook):
    """A :class:`~pruneguard.training.train.BatchHook` that appends to each batch, for its images outside
    ``target``, copies perturbed by targeted L-inf PGD towards ``target`` on the model as it is now (``eps``,
    ``steps`` steps of ``2.5·eps/steps``, random start), with their *true* labels. A per-image counterpart of
    the stamped copies: a backdoor whose trigger differs per image (IAB, WaNet) offers a short path to its target
    from every image that one reversed stamp does not cover; the model unlearns the steps that exploit it."""

    def __init__(self, model: nn.Module, target: int, eps: float, steps: int, generator: torch.Generator) -> None:
        self.model, self.target, self.eps, self.steps, self.generator = model, target, eps, steps, generator

    def batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        keep = torch.nonzero(y != self.target).flatten()
        zero = torch.zeros((), device=x.device)
        if keep.numel() == 0:
            return x, y, zero
        xs, ys = x[keep], y[keep]
        adv = pgd(
            self.model,
            xs,
            ys,
            eps=self.eps,
            step_size=2.5 * self.eps / self.steps,
            steps=self.steps,
            target=torch.full_like(ys, self.target),
            generator=self.generator,
        )
        return torch.cat([x, adv]), torch.cat([y, ys]), zero


class ChainHook:
    """Several batch hooks in order: each rewrites the batch the previous returned; their extra losses add up."""

    def __init__(self, hooks: Sequence[BatchHook]) -> None:
        self.hooks = list(hooks)

    def batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        total = torch.zeros((), device=x.device)
        for h in self.hooks:
            x, y, extra = h.batch(x, y)
            total = total + extra
        return x, y, total

    def zero_grad(self) -> None:
        for h in self.hooks:
            h.zero_grad()

    def step(self) -> None:
        for h in self.hooks:
            h.step()

    def state_dict(self) -> dict[str, Any]:
        return {str(i): h.state_dict() for i, h in enumerate(self.hooks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, h in enumerate(self.hooks):
            h.load_state_dict(state[str(i)])


def unlearn_(
    model: nn.Module,
    data: ArrayData,
    trigger: ReversedTrigger | Sequence[ReversedTrigger],
    config: UnlearnConfig = UnlearnConfig(),
    *,
    seed: int = 0,
    teacher: nn.Module | None = None,
    target: int | None = None,
) -> float:
    """Fine-tune ``model`` in place on ``data`` plus, per trigger, stamped copies of a seeded ``stamp_fraction``
    of it, all with their true labels; pruned (zero) weights stay zero. With ``config.distill`` > 0, ``teacher``
    (not changed) is distilled into ``model`` on the clean images. With ``config.adv_eps`` > 0, each batch also
    gets targeted PGD copies towards ``target`` (default: the triggers' target) with true labels
    (:class:`TargetedAdversarialHook`). Returns the seconds taken."""
    if config.distill > 0 and teacher is None:
        raise ConfigError(f"--unlearn-distill={config.distill} needs a teacher model (e.g. the pruned model)")
    if teacher is model:
        raise ConfigError("the distillation teacher must be another model than the one unlearning (a copy)")
    triggers = [trigger] if isinstance(trigger, ReversedTrigger) else list(trigger)
    gen = torch.Generator().manual_seed(seed)
    n = max(1, round(config.stamp_fraction * len(data)))
    x = to_float(data.x)
    xs, ys = [x], [data.y]
    for trig in triggers:
        pick = torch.randperm(len(data), generator=gen)[:n]
        xs.append(stamp(x[pick], trig.mask, trig.pattern))
        ys.append(data.y[pick])
    mixed = ArrayData(torch.cat(xs), torch.cat(ys), data.num_classes, data.name)
    cfg = TrainConfig(
        epochs=config.epochs,
        lr=config.finetune_lr,
        batch_size=min(config.batch_size, 64),
        seed=seed,
        crop_padding=0,
        hflip=False,
    )
    hooks: list[BatchHook] = []
    tgt = target if target is not None else (triggers[0].target if triggers else None)
    if config.adv_eps > 0:
        if tgt is None:
            raise ConfigError(f"--unlearn-adv-eps={config.adv_eps} needs a target class (no trigger was given)")
        hooks.append(
            TargetedAdversarialHook(
                model, tgt, config.adv_eps, config.adv_steps, torch.Generator().manual_seed(seed + 2)
            )
        )
    if config.distill > 0 and teacher is not None:
        x_dev = x.to(next(model.parameters()).device)
        kd_gen = torch.Generator().manual_seed(seed + 1)
        on = config.distill_suppress > 0
        if on and tgt is None:
            raise ConfigError(
                f"--unlearn-distill-suppress={config.distill_suppress} needs a target class (no trigger was given)"
            )
        hooks.append(
            DistillHook(
                model,
                teacher,
                x_dev,
                config.distill,
                config.temperature,
                kd_gen,
                labels=data.y if on else None,
                suppress=tgt if on else None,
                suppress_share=config.distill_suppress if on else 1.0,
                augment=config.distill_augment,
            )
        )
    hook = None if not hooks else hooks[0] if len(hooks) == 1 else ChainHook(hooks)
    with contextlib.ExitStack() as stack:
        if teacher is not None:  # frozen and in eval mode while it teaches
            stack.enter_context(frozen(teacher))
            stack.enter_context(eval_mode(teacher))
        return fine_tune_(model, mixed, cfg, keep_zero=zero_masks(model), hook=hook).seconds
