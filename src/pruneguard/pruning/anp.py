"""Adversarial Neuron Pruning (ANP): Wu & Wang, NeurIPS 2021, https://arxiv.org/abs/2110.14430 .

Threat model: a model trained by an untrusted party may carry a backdoor; the defender has a small clean set.
ANP learns a mask in [0, 1] per neuron. Each iteration (1) draws a neuron perturbation uniformly in
[-eps, eps] and takes ``steps`` signed-gradient ascent steps of size ``eps / steps`` on the clean loss (the
reference does not project back to the eps-ball; ``clip_noise=True`` does), then (2) takes one SGD step on the
masks for ``alpha * natural_loss + (1 - alpha) * perturbed_loss`` and clamps them to [0, 1]. Neurons with small
masks are then pruned (their scale set to 0, bias kept).

``fast=True`` (not the reference): the first ascent step uses the noise gradient at zero noise instead of at the
random start. At zero noise that gradient is the natural loss's gradient w.r.t. the masks (and w.r.t. the biases'
relative noise), which the min step needs anyway, so one iteration costs two forward/backward passes instead of
three. BENCHMARKS.md compares both on speed and on purification.

The model is never modified during optimisation: masks and noise enter through ``torch.func.functional_call``,
BatchNorm layers use batch statistics without updating their running buffers, and no weight gradient exists.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.data.augment import augment_batch
from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.errors import ConfigError
from pruneguard.pruning.neurons import NeuronGroup, NeuronReparam, find_neuron_groups, grads_or_zeros
from pruneguard.utils.io import atomic_write
from pruneguard.utils.modes import anp_mode, fast_layout
from pruneguard.utils.progress import track

__all__ = [
    "ANPConfig",
    "ANPResult",
    "anp_optimize",
    "perturbation_step",
    "mask_step",
    "fast_iteration",
    "input_fingerprint",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ANPConfig:
    """ANP hyperparameters (defaults: the paper's). ``alpha`` is the trade-off weight of the natural loss."""

    eps: float = 0.4
    steps: int = 1
    alpha: float = 0.2
    iterations: int = 2000
    batch_size: int = 128
    lr: float = 0.2
    momentum: float = 0.9
    rand_init: bool = True
    clip_noise: bool = False
    augment: bool = True
    seed: int = 0
    checkpoint_every: int = 100
    target_class: int | None = None
    fast: bool = False

    def __post_init__(self) -> None:
        checks = [
            (0.0 <= self.eps <= 1.0 and math.isfinite(self.eps), "eps", self.eps, "[0, 1]"),
            (self.steps >= 1, "steps", self.steps, "an integer >= 1"),
            (0.0 <= self.alpha <= 1.0, "alpha", self.alpha, "[0, 1]"),
            (self.iterations >= 1, "iterations", self.iterations, "an integer >= 1"),
            (self.batch_size >= 2, "batch_size", self.batch_size, "an integer >= 2 (BatchNorm needs 2)"),
            (self.lr > 0 and math.isfinite(self.lr), "lr", self.lr, "a positive number"),
            (0.0 <= self.momentum < 1.0, "momentum", self.momentum, "[0, 1)"),
            (self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, "an integer >= 1"),
            (self.target_class is None or self.target_class >= 0, "target_class", self.target_class, "a class >= 0"),
        ]
        for ok, name, value, accepted in checks:
            if not ok:
                raise ConfigError(f"{name}={value} is not accepted; accepted: {accepted}")


@dataclass
class ANPResult:
    """Learned masks (flat, in the groups' order), the optimisation history, and each mask's mean over the
    iterations (``mask_mean``): among neurons whose masks end equal (often many at 0 on networks without
    normalisation layers), the one driven down first has the smaller mean; it breaks the ties of the pruning
    order."""

    groups: list[NeuronGroup]
    masks: Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    iterations: int = 0
    mask_mean: Tensor | None = None

    def mask_table(self) -> list[dict[str, Any]]:
        rows, k = [], 0
        for g in self.groups:
            for i in range(g.size):
                rows.append({"index": k, "layer": g.module, "neuron": i, "mask": float(self.masks[k])})
                k += 1
        return rows


def perturbation_step(
    reparam: NeuronReparam,
    x: Tensor,
    y: Tensor,
    mask: Tensor,
    cfg: ANPConfig,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """The max step: neuron noise (on scales and biases) that increases the clean loss, within budget ``eps``."""
    n = reparam.total
    if cfg.eps == 0.0:
        zero = torch.zeros(n, device=mask.device)
        return zero, zero.clone()
    noise_w = _random_start(n, cfg, generator, mask.device)
    noise_b = _random_start(n, cfg, generator, mask.device)
    return _ascent_steps(reparam, x, y, mask.detach(), noise_w, noise_b, cfg.eps / cfg.steps, cfg)


def _ascent_batch(y: Tensor, cfg: ANPConfig) -> tuple[Tensor, Tensor, float]:
    """Which rows, labels and loss sign the ascent uses: all rows and the true labels (loss up), or, targeted,
    the non-target rows labelled with the target class (loss down)."""
    if cfg.target_class is None:
        return torch.ones_like(y, dtype=torch.bool), y, 1.0
    keep = y != cfg.target_class
    if not bool(keep.any()):
        keep = torch.ones_like(keep)
    return keep, torch.full_like(y[keep], cfg.target_class), -1.0


def _ascend(
    noise_w: Tensor, noise_b: Tensor, g_w: Tensor, g_b: Tensor, step: float, cfg: ANPConfig
) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        noise_w = noise_w + step * g_w.sign()
        noise_b = noise_b + step * g_b.sign()
        if cfg.clip_noise:
            noise_w.clamp_(-cfg.eps, cfg.eps)
            noise_b.clamp_(-cfg.eps, cfg.eps)
    return noise_w.detach(), noise_b.detach()


def _ascent_steps(
    reparam: NeuronReparam,
    x: Tensor,
    y: Tensor,
    m: Tensor,
    noise_w: Tensor,
    noise_b: Tensor,
    step: float,
    cfg: ANPConfig,
) -> tuple[Tensor, Tensor]:
    keep, yt, sign = _ascent_batch(y, cfg)
    xt = x[keep]
    for _ in range(cfg.steps):
        noise_w.requires_grad_(True)
        noise_b.requires_grad_(True)
        loss = sign * F.cross_entropy(reparam.forward(xt, m, noise_w, noise_b), yt)
        g_w, g_b = grads_or_zeros(loss, [noise_w, noise_b])
        noise_w, noise_b = _ascend(noise_w, noise_b, g_w, g_b, step, cfg)
    return noise_w, noise_b


def _random_start(n: int, cfg: ANPConfig, generator: torch.Generator | None, device: torch.device) -> Tensor:
    if not cfg.rand_init:
        return torch.zeros(n, device=device)
    return (torch.rand(n, generator=generator) * 2 - 1).mul_(cfg.eps).to(device)


def fast_iteration(
    reparam: NeuronReparam,
    x: Tensor,
    y: Tensor,
    mask: Tensor,
    opt: torch.optim.Optimizer,
    cfg: ANPConfig,
    generator: torch.Generator | None,
) -> tuple[float, float, float]:
    """One ANP iteration whose first ascent step reuses the natural pass (see the module docstring).

    The noise is drawn as in :func:`perturbation_step`, then moved by ``eps / steps`` times the sign of the clean
    loss's gradient at zero noise; further steps (``steps > 1``) take fresh gradients as the reference does.
    Returns what :func:`mask_step` returns.
    """
    n, device = reparam.total, mask.device
    opt.zero_grad(set_to_none=True)
    zero_b = torch.zeros(n, device=device, requires_grad=True)
    logits_nat = reparam.forward(x, mask, None, zero_b)
    loss_nat = F.cross_entropy(logits_nat, y)
    if cfg.eps == 0.0:
        (g_mask_nat,) = torch.autograd.grad(loss_nat, [mask])
        mask.grad = g_mask_nat
        loss_rob = loss_nat
    else:
        if cfg.target_class is None:
            g_mask_nat, g_b = grads_or_zeros(loss_nat, [mask, zero_b])
            g_w = g_mask_nat
        else:  # the targeted objective needs its own backward through the same natural graph
            (g_mask_nat,) = torch.autograd.grad(loss_nat, [mask], retain_graph=True)
            keep, yt, sign = _ascent_batch(y, cfg)
            g_w, g_b = grads_or_zeros(sign * F.cross_entropy(logits_nat[keep], yt), [mask, zero_b])
        noise_w = _random_start(n, cfg, generator, device)
        noise_b = _random_start(n, cfg, generator, device)
        step = cfg.eps / cfg.steps
        noise_w, noise_b = _ascend(noise_w, noise_b, g_w, g_b, step, cfg)
        if cfg.steps > 1:
            rest = ANPConfig(**{**asdict(cfg), "steps": cfg.steps - 1, "rand_init": False})
            noise_w, noise_b = _ascent_steps(reparam, x, y, mask.detach(), noise_w, noise_b, step, rest)
        loss_rob = F.cross_entropy(reparam.forward(x, mask, noise_w, noise_b), y)
        (g_mask_rob,) = torch.autograd.grad(loss_rob, [mask])
        mask.grad = cfg.alpha * g_mask_nat + (1.0 - cfg.alpha) * g_mask_rob
    opt.step()
    with torch.no_grad():
        mask.clamp_(0.0, 1.0)
    loss = cfg.alpha * loss_nat.detach() + (1.0 - cfg.alpha) * loss_rob.detach()
    acc = float((logits_nat.argmax(1) == y).float().mean())
    return float(loss), float(loss_nat.detach()), acc


def mask_step(
    reparam: NeuronReparam,
    x: Tensor,
    y: Tensor,
    mask: Tensor,
    opt: torch.optim.Optimizer,
    noise: tuple[Tensor, Tensor] | None,
    alpha: float,
) -> tuple[float, float, float]:
    """The min step: SGD on ``alpha * natural + (1 - alpha) * perturbed`` loss, then clamp masks to [0, 1].

    Returns (total loss, natural loss, natural accuracy on the batch).
    """
    opt.zero_grad(set_to_none=True)
    logits_nat = reparam.forward(x, mask)
    loss_nat = F.cross_entropy(logits_nat, y)
    if noise is not None:
        loss_rob = F.cross_entropy(reparam.forward(x, mask, noise[0], noise[1]), y)
        loss = alpha * loss_nat + (1.0 - alpha) * loss_rob
    else:
        loss = loss_nat
    loss.backward()
    opt.step()
    with torch.no_grad():
        mask.clamp_(0.0, 1.0)
    acc = float((logits_nat.argmax(1) == y).float().mean())
    return float(loss.detach()), float(loss_nat.detach()), acc


def input_fingerprint(model: nn.Module, data: ArrayData) -> str:
    """SHA-256 over the model's tensors and the clean data: a saved state is only resumed for the same inputs."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    for t in (data.x, data.y):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _state_matches(state: dict[str, Any], cfg: ANPConfig, fingerprint: str) -> bool:
    return state.get("config") == asdict(cfg) and state.get("fingerprint") == fingerprint and "mask_sum" in state


def anp_optimize(
    model: nn.Module,
    data: ArrayData,
    config: ANPConfig = ANPConfig(),
    *,
    state_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = False,
    stop_after: int | None = None,
) -> ANPResult:
    """Learn ANP neuron masks for ``model`` on the clean set ``data``. ``model`` is not modified.

    With ``state_path``, the optimiser state is saved atomically every ``config.checkpoint_every`` iterations;
    ``resume=True`` continues from it and ends bit-identical (on CPU) to an uninterrupted run.
    ``stop_after`` ends early after that many iterations in total (used to test resumption).
    """
    if len(data) < 2:
        raise ConfigError(f"the clean split has {len(data)} samples; ANP needs at least 2")
    device = next(model.parameters()).device
    x_all, y_all = data.x, data.y  # kept as stored (uint8 images) on the host; each batch moves to the device
    groups = find_neuron_groups(model, to_float(x_all[:2]).to(device))
    reparam = NeuronReparam(model, groups)
    gen = torch.Generator().manual_seed(config.seed)
    mask = torch.ones(reparam.total, device=device, requires_grad=True)
    mask_sum = torch.zeros(reparam.total, device=device)
    opt = torch.optim.SGD([mask], lr=config.lr, momentum=config.momentum)
    history: list[dict[str, float]] = []
    start, seconds = 0, 0.0
    path = Path(state_path) if state_path else None
    fingerprint = input_fingerprint(model, data) if path is not None else ""
    if resume and path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if _state_matches(state, config, fingerprint):
            with torch.no_grad():
                mask.copy_(state["mask"].to(device))
                mask_sum.copy_(state["mask_sum"].to(device))
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            start, history, seconds = int(state["iteration"]), list(state["history"]), float(state["seconds"])
            logger.info("resuming ANP at iteration %d from %s", start, path)
        else:
            logger.warning("ignoring ANP state %s: it was made with another config or model", path)
    pad = max(1, x_all.shape[-1] // 8) if x_all.dim() == 4 else 0
    end = config.iterations if stop_after is None else min(config.iterations, stop_after)
    t0 = time.perf_counter()
    with anp_mode(model), fast_layout(model):
        for it in track(range(start, end), desc="ANP", total=end - start, enabled=progress):
            idx = torch.randint(len(data), (config.batch_size,), generator=gen)
            x, y = to_float(x_all[idx]).to(device), y_all[idx].to(device)
            if config.augment:
                x = augment_batch(x, padding=pad, hflip=True, generator=gen)
            if config.fast:
                loss, loss_nat, acc = fast_iteration(reparam, x, y, mask, opt, config, gen)
            else:
                noise = perturbation_step(reparam, x, y, mask, config, gen) if config.eps > 0 else None
                loss, loss_nat, acc = mask_step(reparam, x, y, mask, opt, noise, config.alpha)
            mask_sum += mask.detach()
            if (it + 1) % config.checkpoint_every == 0 or it + 1 == end:
                history.append({"iteration": it + 1, "loss": loss, "natural_loss": loss_nat, "accuracy": acc})
                if path is not None:
                    state = {
                        "mask": mask.detach().cpu(),
                        "mask_sum": mask_sum.cpu(),
                        "optimizer": opt.state_dict(),
                        "generator": gen.get_state(),
                        "iteration": it + 1,
                        "history": history,
                        "config": asdict(config),
                        "fingerprint": fingerprint,
                        "seconds": seconds + time.perf_counter() - t0,
                    }
                    with atomic_write(path, "wb") as fh:
                        torch.save(state, fh)
    seconds += time.perf_counter() - t0
    mean = mask_sum.cpu() / end if end > 0 else mask.detach().cpu()
    return ANPResult(groups, mask.detach().cpu(), history, seconds, end, mean)
