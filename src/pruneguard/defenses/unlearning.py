"""Unlearning (Neural Cleanse, Wang et al. 2019, its "unlearning" mitigation).

Given stamps that send clean images to a suspected target class (``x' = (1 − m)·x + m·p``; found by
:func:`pruneguard.scan.reversal.reverse_trigger`, or any object with a ``mask``, a ``pattern`` and a ``target``),
fine-tune on the clean split plus stamped copies of 20% of it (the paper's share) that keep their *true* labels,
so the model unlearns the shortcut. Only the defender's clean data is used; the trigger is never known.

``distill`` > 0 (not in Neural Cleanse) adds a knowledge-distillation term on clean images of the split, with a
frozen ``teacher``: ``distill · T² · KL(softmax(teacher/T) ‖ softmax(student/T))``. ``purify`` passes the pruned
model as it was before the unlearning: the fine-tune on a few hundred images then stays near the pruned model's
clean behaviour instead of drifting. The teacher is the pruned model, not the unpruned one: a backdoored teacher
teaches part of its backdoor back through its outputs on clean images (``distill_suppress`` removes a share of
its suspected-class probability on other classes' images for the same reason). Clean images only: on stamped
copies a backdoored teacher would teach the shortcut itself.

``adv_eps`` > 0 (not in Neural Cleanse; the per-image idea of adversarial unlearning, e.g. I-BAU and SAU, in its
simplest form) adds to every fine-tuning batch targeted L-inf PGD copies of its non-target images towards the
suspected class, computed on the model as it is at that step, with their true labels: a trigger that differs per
image (IAB, WaNet) is not one stamp, but the backdoor leaves a short path to the target from every image.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.backdoor.triggers import stamp
from pruneguard.attacks.evasion.pgd import pgd
from pruneguard.data.augment import augment_batch
from pruneguard.data.tensors import ArrayData, iterate_batches, to_float
from pruneguard.defenses.fine_tune import fine_tune_, zero_masks
from pruneguard.errors import ConfigError
from pruneguard.models.fit import BatchHook, TrainConfig
from pruneguard.utils.modes import eval_mode, fast_layout, frozen

__all__ = [
    "TriggerStamp",
    "UnlearnConfig",
    "unlearn_",
    "distill_loss",
    "recalibrate_batchnorm_",
    "DistillHook",
    "TargetedAdversarialHook",
    "ChainHook",
]


@dataclass(frozen=True, slots=True)
class UnlearnConfig:
    """Settings of the unlearning fine-tune (batches of ``min(batch_size, 64)``) and its extra terms."""

    batch_size: int = 128
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
        if not 0 < self.stamp_fraction <= 1:
            raise ConfigError(f"stamp_fraction={self.stamp_fraction} must be in (0, 1]")
        if self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs} must be >= 1")
        if not self.finetune_lr > 0 or not math.isfinite(self.finetune_lr):
            raise ConfigError(f"finetune_lr={self.finetune_lr} must be a positive number")
        if not self.distill >= 0 or not math.isfinite(self.distill):
            raise ConfigError(f"distill={self.distill} must be a number >= 0")
        if not 0 <= self.distill_suppress <= 1:
            raise ConfigError(f"distill_suppress={self.distill_suppress} must be in [0, 1]")
        if not 0 <= self.adv_eps <= 1:
            raise ConfigError(f"adv_eps={self.adv_eps} must be in [0, 1] (images in [0, 1])")
        if self.adv_steps < 1:
            raise ConfigError(f"adv_steps={self.adv_steps} must be >= 1")
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise ConfigError(f"temperature={self.temperature} must be a positive number")


@runtime_checkable
class TriggerStamp(Protocol):
    """A stamp to unlearn: ``mask`` (1×H×W, or 1×1×1 for a blend) and ``pattern`` (C×H×W), both in [0, 1], and
    the ``target`` class it sends images to (e.g. :class:`pruneguard.scan.reversal.ReversedTrigger`). A trigger
    with an ``apply(x)`` method is put on images with it instead (a reversed warp has no stamp)."""

    @property
    def target(self) -> int: ...

    @property
    def mask(self) -> Tensor: ...

    @property
    def pattern(self) -> Tensor: ...


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
    """A :class:`~pruneguard.models.fit.BatchHook` that leaves each batch as it is and adds ``weight`` times
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
    """A :class:`~pruneguard.models.fit.BatchHook` that appends to each batch, for its images outside
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


def _apply(trigger: TriggerStamp, x: Tensor) -> Tensor:
    """``x`` with ``trigger`` on: its own ``apply`` (a reversed warp) or the stamp of its mask and pattern."""
    apply = getattr(trigger, "apply", None)
    return apply(x) if callable(apply) else stamp(x, trigger.mask, trigger.pattern)


def unlearn_(
    model: nn.Module,
    data: ArrayData,
    trigger: TriggerStamp | Sequence[TriggerStamp],
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
        raise ConfigError(f"distill={config.distill} needs a teacher model (e.g. the pruned model)")
    if teacher is model:
        raise ConfigError("the distillation teacher must be another model than the one unlearning (a copy)")
    triggers = [trigger] if isinstance(trigger, TriggerStamp) else list(trigger)
    gen = torch.Generator().manual_seed(seed)
    n = max(1, round(config.stamp_fraction * len(data)))
    x = to_float(data.x)
    xs, ys = [x], [data.y]
    for trig in triggers:
        pick = torch.randperm(len(data), generator=gen)[:n]
        xs.append(_apply(trig, x[pick]))
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
            raise ConfigError(f"adv_eps={config.adv_eps} needs a target class (no trigger was given)")
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
            raise ConfigError(f"distill_suppress={config.distill_suppress} needs a target class (no trigger was given)")
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
            stack.enter_context(fast_layout(teacher))
        return fine_tune_(model, mixed, cfg, keep_zero=zero_masks(model), hook=hook).seconds
