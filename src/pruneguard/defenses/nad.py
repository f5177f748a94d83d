"""Neural Attention Distillation (NAD, Li et al. 2021): distil a fine-tuned teacher's attention into the model."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.data.augment import augment_batch
from pruneguard.data.tensors import ArrayData, iterate_batches, to_float
from pruneguard.defenses.finetune_defense import clean_train_config, finetune_defense
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.utils.modes import eval_mode

__all__ = ["nad", "attention_map", "attention_loss", "attention_layers", "capture_outputs"]

logger = logging.getLogger(__name__)
PAPER_BETA = 5000.0
"""The NAD paper's distillation weight for CIFAR-10 (the reference code uses 500, 1000, 1000 on its 3 groups)."""


def attention_map(a: Tensor, p: float = 2.0) -> Tensor:
    """NAD's attention map of features ``(N, C, H, W)``: ``mean_c |a|^p``, flattened and L2-normalised, ``(N, HW)``."""
    am = a.abs().pow(p).mean(dim=1).flatten(1)
    return F.normalize(am, p=2.0, dim=1, eps=1e-6)


def attention_loss(student: Tensor, teacher: Tensor, p: float = 2.0) -> Tensor:
    """Mean squared difference of the two attention maps (the reference code's ``AT`` loss)."""
    return F.mse_loss(attention_map(student, p), attention_map(teacher, p))


def attention_layers(model: nn.Module, example: Tensor, num_layers: int = 3) -> list[str]:
    """The outputs of the last ``num_layers`` conv stages of ``model``, found by a forward trace.

    Every module's output is recorded in the order the modules finish. A *stage* is a run of consecutive
    4-D outputs with the same spatial size that contains a ``Conv2d`` output; its representative is the last
    module finishing in that run (e.g. ``layer2``..``layer4`` of a ResNet, the ReLU after each conv block of a
    plain CNN). Runs of size 1x1 (global pooling) are skipped: their attention map is constant.
    """
    names = {m: n for n, m in model.named_modules()}
    trace: list[tuple[str, tuple[int, ...] | None, bool]] = []

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        hw = tuple(output.shape[-2:]) if isinstance(output, Tensor) and output.dim() == 4 else None
        trace.append((names[module], hw, isinstance(module, nn.Conv2d)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        with torch.no_grad(), eval_mode(model):
            model(example)
    finally:
        for h in handles:
            h.remove()
    stages: list[tuple[str, bool]] = []
    prev: tuple[int, ...] | None = None
    for name, hw, is_conv in trace:
        if hw is None or hw == (1, 1):
            prev = None
            continue
        if hw == prev:
            stages[-1] = (name, stages[-1][1] or is_conv)
        else:
            stages.append((name, is_conv))
        prev = hw
    found = [name for name, has_conv in stages if has_conv]
    if not found:
        raise IncompatibleModelError("the model has no conv stage with a spatial output; NAD needs conv features")
    return found[-num_layers:]


@contextlib.contextmanager
def capture_outputs(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Within the block, every forward of ``model`` stores the outputs of ``layers`` in the yielded dict."""
    modules = dict(model.named_modules())
    store: dict[str, Tensor] = {}

    def make(name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
            store[name] = output.clone()  # a clone: in-place ops later in the forward must not change it

        return hook

    handles = [modules[n].register_forward_hook(make(n)) for n in layers]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def _validate(model: nn.Module, betas: Sequence[float], layers: Sequence[str], p: float, teacher_epochs: int) -> None:
    modules = dict(model.named_modules())
    unknown = [n for n in layers if n not in modules or n == ""]
    if not layers or unknown:
        raise ConfigError(
            f"layers={list(layers)} is not accepted; accepted: one or more module names of the model, e.g. "
            f"{attention_layers.__name__}(model, x)"
        )
    if len(betas) != len(layers):
        raise ConfigError(f"betas={tuple(betas)} is not accepted; accepted: one beta per layer ({len(layers)})")
    if any(not (b >= 0 and math.isfinite(b)) for b in betas):
        raise ConfigError(f"betas={tuple(betas)} is not accepted; accepted: numbers >= 0")
    if not (p > 0 and math.isfinite(p)):
        raise ConfigError(f"p={p!r} is not accepted; accepted: a positive number")
    if not (isinstance(teacher_epochs, int) and teacher_epochs >= 1):
        raise ConfigError(f"teacher_epochs={teacher_epochs!r} is not accepted; accepted: an integer >= 1")


def _distil_batch(
    student: nn.Module,
    teacher: nn.Module,
    x: Tensor,
    y: Tensor,
    s_out: dict[str, Tensor],
    t_out: dict[str, Tensor],
    layers: Sequence[str],
    betas: Sequence[float],
    p: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Student logits, its cross-entropy and the weighted attention-distillation loss on one batch."""
    with torch.no_grad():
        teacher(x)
    logits = student(x)
    at = torch.stack([b * attention_loss(s_out[k], t_out[k], p) for b, k in zip(betas, layers, strict=True)]).sum()
    return logits, F.cross_entropy(logits, y), at


def nad(
    model: nn.Module,
    clean: ArrayData,
    *,
    epochs: int = 20,
    teacher_epochs: int = 10,
    lr: float = 0.01,
    betas: Sequence[float] | None = None,
    layers: Sequence[str] | None = None,
    p: float = 2.0,
    batch_size: int = 128,
    augment: bool = True,
    seed: int = 0,
    teacher: nn.Module | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """NAD on a copy of ``model`` with the defender's clean split; ``model`` itself is never modified.

    Paper: https://arxiv.org/abs/2101.05930 . (1) A teacher is a copy of ``model`` fine-tuned on ``clean`` for
    ``teacher_epochs`` (:func:`finetune_defense`), or the given ``teacher`` (not modified). (2) The student,
    another copy of ``model``, is trained on ``clean`` for ``epochs`` with
    ``CE + sum_l beta_l * AT(student_l, teacher_l)``, ``AT`` the mean squared difference of the attention maps
    (:func:`attention_map`, ``p=2``) at ``layers`` (default: the outputs of the last three conv stages,
    :func:`attention_layers`). ``betas`` default to the paper's 5000 per layer. SGD (momentum 0.9, weight decay
    5e-4) with a cosine ``lr`` schedule and the augmentation of :func:`clean_train_config`; the teacher runs in
    eval mode (its flags are restored). Deterministic for a fixed ``seed``.

    The paper's beta is calibrated for CIFAR-10 ResNets; the attention gradient grows as the feature maps get
    smaller and weaker, so tiny models on small images diverge with it (``history`` shows ``ce`` rising and
    ``at`` not falling): use a smaller beta there (10 to 100 for an 8x8 GAP-CNN).

    Returns:
        The student (eval mode) and ``{"method": "nad", "layers", "betas", "p", "history" (per epoch: loss,
        ce, at, accuracy), "teacher_history"}``.

    Example:
        >>> defended, info = nad(model, clean, epochs=20, teacher_epochs=10, lr=0.01)
    """
    cfg = clean_train_config(clean, epochs=epochs, lr=lr, batch_size=batch_size, augment=augment, seed=seed)
    device = next(model.parameters()).device
    chosen = list(layers) if layers is not None else attention_layers(model, to_float(clean.x[:2]).to(device))
    weights = list(betas) if betas is not None else [PAPER_BETA] * len(chosen)
    _validate(model, weights, chosen, p, teacher_epochs)
    teacher_history: list[dict[str, float]] = []
    if teacher is None:
        teacher, tinfo = finetune_defense(
            model, clean, epochs=teacher_epochs, lr=lr, batch_size=batch_size, augment=augment, seed=seed
        )
        teacher_history = tinfo["history"]
    student = copy.deepcopy(model)
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    iters = math.ceil(len(clean) / cfg.batch_size)
    history: list[dict[str, float]] = []
    with eval_mode(teacher), capture_outputs(student, chosen) as s_out, capture_outputs(teacher, chosen) as t_out:
        for epoch in range(epochs):
            student.train()
            sums = {"loss": 0.0, "ce": 0.0, "at": 0.0, "correct": 0.0, "n": 0.0}
            batches = iterate_batches(clean, cfg.batch_size, shuffle=True, generator=gen, device=device)
            for it, (x, y) in enumerate(batches):
                if x.shape[0] < 2:
                    continue
                for group in opt.param_groups:
                    group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * (epoch + it / iters) / epochs))
                x = augment_batch(x, padding=cfg.crop_padding, hflip=cfg.hflip, generator=gen)
                logits, ce, at = _distil_batch(student, teacher, x, y, s_out, t_out, chosen, weights, p)
                loss = ce + at
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n = float(y.numel())
                sums["loss"] += float(loss.detach()) * n
                sums["ce"] += float(ce.detach()) * n
                sums["at"] += float(at.detach()) * n
                sums["correct"] += float((logits.argmax(1) == y).sum())
                sums["n"] += n
            if sums["n"] == 0 or not math.isfinite(sums["loss"]):
                raise ConfigError(f"NAD diverged or saw no data in epoch {epoch + 1} (loss={sums['loss']})")
            row = {k: sums[k] / sums["n"] for k in ("loss", "ce", "at")}
            history.append({"epoch": epoch + 1, **row, "accuracy": sums["correct"] / sums["n"]})
            logger.info("NAD epoch %d: loss %.4f (ce %.4f, at %.4f)", epoch + 1, row["loss"], row["ce"], row["at"])
    student.eval()
    info = {"method": "nad", "layers": chosen, "betas": weights, "p": p, "history": history}
    info["teacher_history"] = teacher_history
    return student, info
