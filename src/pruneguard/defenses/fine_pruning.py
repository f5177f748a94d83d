"""Fine-Pruning (Liu et al. 2018): prune the dormant channels of the last conv layer, then fine-tune."""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData, iterate_batches, to_float
from pruneguard.defenses.fine_tune import fine_tune_
from pruneguard.defenses.finetune_defense import clean_accuracy, clean_train_config
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.utils.modes import eval_mode

__all__ = ["fine_pruning", "last_conv_layer", "channel_activations", "prune_channels_"]

logger = logging.getLogger(__name__)
_NORMS = (nn.BatchNorm2d,)


def last_conv_layer(model: nn.Module, example: Tensor) -> tuple[str, str | None]:
    """Trace one forward pass: the last ``Conv2d`` run, and the BatchNorm fed directly by it (or ``None``)."""
    names = {m: n for n, m in model.named_modules()}
    convs: list[nn.Module] = []
    outputs: dict[int, tuple[nn.Module, Tensor]] = {}  # tensors kept alive so ids stay unique
    norm_of: dict[nn.Module, nn.Module] = {}

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            convs.append(module)
            outputs[id(output)] = (module, output)
        elif inputs and id(inputs[0]) in outputs:
            norm_of.setdefault(outputs[id(inputs[0])][0], module)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, *_NORMS))]
    try:
        with torch.no_grad(), eval_mode(model):
            model(example)
    finally:
        for h in handles:
            h.remove()
    if not convs:
        raise IncompatibleModelError("the model has no Conv2d layer; Fine-Pruning prunes the last conv layer")
    last = convs[-1]
    norm = norm_of.get(last)
    return names[last], (names[norm] if norm is not None else None)


@torch.no_grad()
def channel_activations(model: nn.Module, data: ArrayData, module: str, batch_size: int = 256) -> Tensor:
    """Mean of ``relu(output)`` of ``module`` per channel over ``data`` and positions (eval mode), ``(C,)``."""
    target = dict(model.named_modules())[module]
    device = next(model.parameters()).device
    sums: list[Tensor] = []
    handle = target.register_forward_hook(lambda m, i, o: sums.append(o.detach().relu().mean(dim=(2, 3)).sum(0)))
    try:
        with eval_mode(model):
            for x, _ in iterate_batches(data, batch_size, device=device):
                model(x)
    finally:
        handle.remove()
    return torch.stack(sums).sum(0).cpu() / max(1, len(data))


def _pruned_parameters(model: nn.Module, conv: str, norm: str | None) -> list[str]:
    params = dict(model.named_parameters())
    names = [f"{conv}.weight", f"{conv}.bias"] + ([f"{norm}.weight", f"{norm}.bias"] if norm else [])
    return [n for n in names if n in params]


@torch.no_grad()
def prune_channels_(model: nn.Module, conv: str, norm: str | None, channels: Tensor) -> dict[str, Tensor]:
    """Zero output ``channels`` of ``conv`` (weights, bias) and of its BatchNorm ``norm`` (scale, shift).

    The channels then output exactly 0 (after the BatchNorm when there is one). Mutates ``model``; returns the
    boolean masks of the zeroed entries per parameter name (for :func:`fine_tune_`'s ``keep_zero``).
    """
    params = dict(model.named_parameters())
    masks: dict[str, Tensor] = {}
    for name in _pruned_parameters(model, conv, norm):
        p = params[name]
        mask = torch.zeros_like(p, dtype=torch.bool)
        mask[channels.to(p.device)] = True
        p[mask] = 0.0
        masks[name] = mask
    return masks


def _validate(max_acc_drop: float, max_ratio: float, step: int) -> None:
    checks = [
        (0.0 <= max_acc_drop <= 1.0, "max_acc_drop", max_acc_drop, "[0, 1]"),
        (0.0 < max_ratio < 1.0, "max_ratio", max_ratio, "(0, 1)"),
        (isinstance(step, int) and step >= 1, "step", step, "an integer >= 1"),
    ]
    for ok, name, value, accepted in checks:
        if not ok:
            raise ConfigError(f"{name}={value!r} is not accepted; accepted: {accepted}")


def fine_pruning(
    model: nn.Module,
    clean: ArrayData,
    *,
    max_acc_drop: float = 0.04,
    max_ratio: float = 0.9,
    step: int = 1,
    epochs: int = 10,
    lr: float = 0.01,
    batch_size: int = 128,
    augment: bool = True,
    seed: int = 0,
) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-Pruning on a copy of ``model`` with the defender's clean split; ``model`` itself is never modified.

    Paper: https://arxiv.org/abs/1805.12185 . The backdoor tends to live in neurons that clean inputs leave
    dormant. (1) The last ``Conv2d`` is found by a forward trace; its channels are ranked by their mean
    activation on ``clean`` (``relu`` of the conv output, after the BatchNorm it feeds directly, if any).
    (2) Channels are pruned in increasing order of activation, ``step`` at a time, while the clean-split
    accuracy stays within ``max_acc_drop`` of the unpruned model's, and at most ``max_ratio`` of them; the step
    that breaks the accuracy budget is undone. Pruning zeroes the channel's conv weights and bias and its
    BatchNorm scale and shift, so it outputs 0. (3) The copy is fine-tuned on ``clean``
    (:func:`clean_train_config`) with the pruned entries held at zero; ``epochs=0`` prunes only.

    Cost: one clean-split evaluation per pruning step plus the fine-tuning.

    Returns:
        The defended copy (eval mode) and ``{"method": "fine_pruning", "layer", "norm", "channels", "pruned"
        (channel indices), "pruned_ratio", "clean_accuracy_before", "clean_accuracy_pruned", "prune_history",
        "history"}``.

    Example:
        >>> defended, info = fine_pruning(model, clean, max_acc_drop=0.04, epochs=10, lr=0.01)
    """
    _validate(max_acc_drop, max_ratio, step)
    if not (isinstance(epochs, int) and epochs >= 0):
        raise ConfigError(f"epochs={epochs!r} is not accepted; accepted: an integer >= 0 (0: prune only)")
    cfg = clean_train_config(clean, epochs=max(1, epochs), lr=lr, batch_size=batch_size, augment=augment, seed=seed)
    if clean.x.dim() != 4:
        raise ConfigError(f"clean data of shape {tuple(clean.x.shape)} is not accepted; accepted: images")
    device = next(model.parameters()).device
    conv, norm = last_conv_layer(model, to_float(clean.x[:2]).to(device))
    acts = channel_activations(model, clean, conv if norm is None else norm)
    order = torch.argsort(acts, stable=True)
    channels = int(acts.numel())
    base = clean_accuracy(model, clean)
    work = copy.deepcopy(model)
    kept, history = 0, [{"pruned": 0, "clean_accuracy": base}]
    for count in range(step, int(max_ratio * channels) + 1, step):
        prune_channels_(work, conv, norm, order[kept:count])
        acc = clean_accuracy(work, clean)
        history.append({"pruned": count, "clean_accuracy": acc})
        if base - acc > max_acc_drop:
            break
        kept = count
    defended = copy.deepcopy(model)
    pruned = order[:kept].sort().values
    masks = prune_channels_(defended, conv, norm, pruned)
    acc_pruned = clean_accuracy(defended, clean)
    logger.info(
        "fine-pruning: %d/%d channels of %s pruned, clean acc %.4f -> %.4f", kept, channels, conv, base, acc_pruned
    )
    history_ft = fine_tune_(defended, clean, cfg, keep_zero=masks).history if epochs > 0 else []
    defended.eval()
    info = {
        "method": "fine_pruning",
        "layer": conv,
        "norm": norm,
        "channels": channels,
        "pruned": pruned.tolist(),
        "pruned_ratio": kept / channels,
        "clean_accuracy_before": base,
        "clean_accuracy_pruned": acc_pruned,
        "prune_history": history,
        "history": history_ft,
    }
    return defended, info
