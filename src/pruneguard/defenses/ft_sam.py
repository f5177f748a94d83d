"""FT-SAM (Zhu et al., ICCV 2023): fine-tuning on clean data with adaptive sharpness-aware minimisation.

Paper: "Enhancing Fine-Tuning Based Backdoor Defense with Sharpness-Aware Minimization",
https://arxiv.org/abs/2212.09067 . Plain fine-tuning with little clean data leaves the backdoor neurons in their
local minimum; the paper observes that those neurons have large norms and that sharpness-aware minimisation with
an *adaptive* radius shrinks them. Each step (1) takes the gradient ``g`` of the clean loss at ``w``, (2) moves to
the worst case in a weight-scaled ball, ``e = rho * T_w^2 g / ||T_w g||_2`` with ``T_w = diag(|w| + eta)``
(per weight entry, so the radius of each entry grows with its magnitude: large backdoor weights are perturbed
most), (3) takes the gradient at ``w + e`` with BatchNorm running statistics frozen, and (4) steps from ``w``
with it (SGD, momentum 0.9, weight decay 5e-4, cosine learning rate). The loss is cross-entropy with label
smoothing 0.1, as in the authors' code. Weights that are exactly zero (pruned) get ``T_w = eta`` and, with
``keep_pruned``, no gradient: they stay zero.

Scaling: the paper (and BackdoorBench's port of the authors' code) fine-tunes a PreAct-ResNet-18 on 5% of CIFAR-10
(2,500 images) with batch 256 for 100 epochs (about 1,000 steps), lr 0.01, rho 2. We have about 600 clean images
(1% of Fashion-MNIST, 28x28x1 in [0, 1]): batch 64 keeps about 10 steps per epoch, so 100 epochs keep the paper's
number of steps; rho, the learning rate and the smoothing are scale-free and kept. The crop/flip augmentation
of the paper's CIFAR pipeline is on by default (crop padding ``W // 14``, as our other fine-tuning baselines).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.data.augment import augment_batch
from pruneguard.data.tensors import ArrayData, iterate_batches
from pruneguard.defenses._loop import (
    cosine_lr,
    device_of,
    log_progress,
    pruned_entries,
    set_lr_,
    zero_pruned_,
    zero_pruned_grads_,
)
from pruneguard.defenses.registry import check, in_range, is_int, is_positive, register_defense
from pruneguard.errors import ConfigError

__all__ = ["FTSAMConfig", "ft_sam", "sam_perturbation"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FTSAMConfig:
    """FT-SAM settings (defaults: the paper's, scaled to ~600 clean images; see the module docstring)."""

    epochs: int = 100
    lr: float = 0.01
    batch_size: int = 64
    rho: float = 2.0
    adaptive: bool = True
    eta: float = 0.0
    label_smoothing: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    keep_pruned: bool = True

    def __post_init__(self) -> None:
        check(is_int(self.epochs, 1), "epochs", self.epochs, "an integer >= 1")
        check(is_positive(self.lr), "lr", self.lr, "a positive number")
        check(is_int(self.batch_size, 2), "batch_size", self.batch_size, "an integer >= 2")
        check(is_positive(self.rho), "rho", self.rho, "a positive number")
        check(isinstance(self.adaptive, bool), "adaptive", self.adaptive, "True or False")
        check(in_range(self.eta, 0.0, math.inf), "eta", self.eta, "a number >= 0")
        check(in_range(self.label_smoothing, 0.0, 0.99), "label_smoothing", self.label_smoothing, "[0, 0.99]")
        check(in_range(self.momentum, 0.0, 0.999), "momentum", self.momentum, "a number in [0, 0.999]")
        check(in_range(self.weight_decay, 0.0, 1.0), "weight_decay", self.weight_decay, "a number in [0, 1]")


@torch.no_grad()
def sam_perturbation(
    params: list[nn.Parameter], grads: list[Tensor], *, rho: float, adaptive: bool, eta: float = 0.0
) -> list[Tensor]:
    """The worst-case weight perturbation of (A)SAM to first order: ``rho * T^2 g / ||T g||_2``.

    ``T`` is ``|w| + eta`` per entry when ``adaptive`` (ASAM, the radius the FT-SAM paper uses), else 1 (SAM).
    The perturbation's ``T^{-1}``-scaled norm is ``rho`` (0 when every gradient is 0).
    """
    scales = [(p.abs() + eta) if adaptive else torch.ones_like(p) for p in params]
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(t * g) for t, g in zip(scales, grads, strict=True)])
    )
    factor = rho / (norm + 1e-12)
    return [t * t * g * factor for t, g in zip(scales, grads, strict=True)]


def _frozen_norm_stats(model: nn.Module) -> list[tuple[nn.modules.batchnorm._BatchNorm, float | None]]:
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.momentum = 0.0  # the second pass reads batch statistics but leaves the running ones as they were
    return saved


def _sam_step(
    model: nn.Module,
    params: list[nn.Parameter],
    x: Tensor,
    y: Tensor,
    config: FTSAMConfig,
) -> tuple[float, Tensor]:
    """Steps (1)-(3) of the module docstring: leaves the gradient at the perturbed point in ``p.grad``."""
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
    raw = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, raw, strict=True)]
    eps = sam_perturbation(params, grads, rho=config.rho, adaptive=config.adaptive, eta=config.eta)
    with torch.no_grad():
        for p, e in zip(params, eps, strict=True):
            p.add_(e)
    saved = _frozen_norm_stats(model)
    try:
        for p in params:
            p.grad = None
        F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing).backward()
    finally:
        for norm, momentum in saved:
            norm.momentum = momentum
        with torch.no_grad():
            for p, e in zip(params, eps, strict=True):
                p.sub_(e)
    return float(loss.detach()), logits.detach()


@register_defense("ft_sam", FTSAMConfig)
def ft_sam(model: nn.Module, clean: ArrayData, config: FTSAMConfig, *, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """FT-SAM on a copy of ``model`` with the defender's clean split; ``model`` itself is never modified.

    Threat model: the defender holds the suspect model and a small clean labelled set (``(N, C, H, W)`` images
    in [0, 1]). Batch order and augmentation come from a generator seeded with ``seed``: same seed, same weights
    on CPU. The device is the model's.

    Returns:
        The fine-tuned copy (eval mode) and ``{"method": "ft_sam", "config", "history"}`` (per epoch: loss,
        accuracy on the clean batches before each step).

    Example:
        >>> purified, info = ft_sam(model, clean, FTSAMConfig(epochs=100), seed=0)
    """
    if len(clean) < 2:
        raise ConfigError(f"the clean split has {len(clean)} samples; accepted: at least 2")
    defended = copy.deepcopy(model)
    device = device_of(defended)
    params = [p for p in defended.parameters() if p.requires_grad]
    pruned = pruned_entries(defended, config.keep_pruned)
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    image = clean.x.dim() == 4
    padding = max(1, clean.x.shape[-1] // 14) if image and config.augment else 0
    batch = min(config.batch_size, len(clean))
    total, step = config.epochs * math.ceil(len(clean) / batch), 0
    history: list[dict[str, float]] = []
    for epoch in range(config.epochs):
        defended.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in iterate_batches(clean, batch, shuffle=True, generator=gen, device=device):
            step += 1
            if x.shape[0] < 2:
                continue
            x = augment_batch(x, padding=padding, hflip=image and config.augment, generator=gen)
            set_lr_(opt, cosine_lr(config.lr, step - 1, total))
            loss, logits = _sam_step(defended, params, x, y, config)
            zero_pruned_grads_(pruned)
            opt.step()
            zero_pruned_(pruned)
            loss_sum, seen = loss_sum + loss * y.numel(), seen + y.numel()
            correct += int((logits.argmax(1) == y).sum())
        if seen == 0 or not math.isfinite(loss_sum):
            raise ConfigError(f"FT-SAM diverged or saw no data in epoch {epoch + 1} (loss={loss_sum})")
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "accuracy": correct / seen})
        log_progress(logger, "FT-SAM epoch", epoch + 1, config.epochs, history[-1])
    defended.eval()
    return defended, {"method": "ft_sam", "config": asdict(config), "history": history}
