"""SAU (Wei et al., NeurIPS 2023): shared adversarial unlearning.

Paper: "Shared Adversarial Unlearning: Backdoor Mitigation by Unlearning Shared Adversarial Examples",
https://arxiv.org/abs/2307.10562 . The backdoor risk of the purified model ``h`` is bounded by its *shared*
adversarial risk with the original (backdoored) model ``h0``: the risk on perturbed inputs that fool both models
into the same wrong class, which is what a trigger does. SAU solves the bi-level problem

    min_h  lambda1 * CE(h(x), y) + lambda2 * CE(h(x + d*), y) + lambda3 * L_sar(h, x + d*)
    d* = PGD_d [beta1 * L_adv(h, h0, x + d) + beta2 * L_share(h, h0, x + d)],  ||d||_inf <= eps, x + d in [0, 1]

Inner step (per batch, both models in eval mode, ``h0`` frozen): an L_inf PGD of ``steps`` sign steps, started
at ``d = +eps`` (the authors' "max" start), minimises ``beta1 * L_adv + beta2 * L_share``: ``L_adv`` is minus the
mean cross-entropy (true labels) of each model on the samples it still classifies as on the clean input, and
``L_share`` the Jensen-Shannon divergence of the two models' predictions on the samples not yet shared-adversarial
(pulling both models to the same wrong class); it stops early once every sample is shared-adversarial. Outer step
(Adam, cosine learning rate): clean cross-entropy, the adversarial cross-entropy, and ``L_sar``: on the samples
where ``h0`` is fooled (a wrong class that differs from its clean prediction), ``-log(1 - p_h(k0))`` with ``k0``
the class ``h0`` gives the perturbed input, so ``h`` stops sharing the mistake. The weights are the paper's:
``beta1 = 0.01``, ``beta2 = 1``, ``lambda1 = lambda3 = 1`` and ``lambda2 = 0`` (the authors' default: the plain
adversarial term is off, the shared term does the unlearning; set ``lambda2 > 0`` to add it). The purified model
stays in eval mode as in the authors' code (BatchNorm statistics are not re-estimated on the small clean set).

Scaling: the paper (and BackdoorBench) unlearns a PreAct-ResNet-18 with 5% of CIFAR-10 (2,500 images), batch
256, 100 epochs (about 1,000 steps), Adam lr 1e-4, PGD with eps 0.2 (L_inf, in [0, 1] pixel units), step 0.2,
5 steps. We have about 600 clean images (1% of Fashion-MNIST, 28x28x1 in [0, 1]): batch 64 keeps about 10 steps
per epoch and 100 epochs the paper's number of steps; the PGD budget is in pixel units and kept as it is.
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
from pruneguard.utils.modes import frozen

__all__ = ["SAUConfig", "sau", "shared_pgd", "shared_adversarial_loss"]
_STARTS = ("max", "zero", "random")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SAUConfig:
    """SAU settings (defaults: the paper's, scaled to ~600 clean images; see the module docstring)."""

    rounds: int = 100
    lr: float = 1e-4
    batch_size: int = 64
    eps: float = 0.2
    step_size: float = 0.2
    steps: int = 5
    start: str = "max"
    beta_adv: float = 0.01
    beta_shared: float = 1.0
    lambda_clean: float = 1.0
    lambda_adv: float = 0.0
    lambda_shared: float = 1.0
    keep_pruned: bool = True

    def __post_init__(self) -> None:
        check(is_int(self.rounds, 1), "rounds", self.rounds, "an integer >= 1")
        check(is_positive(self.lr), "lr", self.lr, "a positive number")
        check(is_int(self.batch_size, 2), "batch_size", self.batch_size, "an integer >= 2")
        check(in_range(self.eps, 0.0, 1.0) and self.eps > 0, "eps", self.eps, "a number in (0, 1] (pixel units)")
        check(is_positive(self.step_size), "step_size", self.step_size, "a positive number")
        check(is_int(self.steps, 1), "steps", self.steps, "an integer >= 1")
        check(self.start in _STARTS, "start", self.start, ", ".join(_STARTS))
        for name in ("beta_adv", "beta_shared", "lambda_clean", "lambda_adv", "lambda_shared"):
            value = getattr(self, name)
            check(in_range(value, 0.0, math.inf), name, value, "a number >= 0")


def _js_divergence(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """Per-sample Jensen-Shannon divergence of two softmax predictions, ``(N,)``."""
    p, q = F.softmax(logits_a, 1).clamp_min(1e-8), F.softmax(logits_b, 1).clamp_min(1e-8)
    m = 0.5 * (p + q)
    return 0.5 * (p * (p.log() - m.log())).sum(1) + 0.5 * (q * (q.log() - m.log())).sum(1)


def shared_pgd(
    model: nn.Module,
    reference: nn.Module,
    x: Tensor,
    y: Tensor,
    config: SAUConfig,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Perturbations ``d`` (shape of ``x``) that fool ``model`` and ``reference`` into the same wrong class.

    Both models are called as they are (the caller sets eval mode); their weights get no gradient. ``x + d``
    stays in [0, 1] and ``|d| <= config.eps``. ``generator`` draws the "random" start.
    """
    with torch.no_grad():
        clean_pred, clean_pred_ref = model(x).argmax(1), reference(x).argmax(1)
    if config.start == "max":
        d = torch.full_like(x, config.eps)
    elif config.start == "random":
        d = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x.device) * config.eps
    else:
        d = torch.zeros_like(x)
    d = ((x + d).clamp(0, 1) - x).detach()
    n = x.shape[0]
    for _ in range(config.steps):
        d.requires_grad_(True)
        logits, logits_ref = model(x + d), reference(x + d)
        pred, pred_ref = logits.argmax(1), logits_ref.argmax(1)
        fooled, fooled_ref = pred != clean_pred, pred_ref != clean_pred_ref
        shared = fooled & fooled_ref & (pred == pred_ref)
        ce = F.cross_entropy(logits, y, reduction="none")
        ce_ref = F.cross_entropy(logits_ref, y, reduction="none")
        adv = -((ce * (~fooled)).sum() + (ce_ref * (~fooled_ref)).sum()) / (2 * n)
        share = (_js_divergence(logits, logits_ref) * (~shared)).sum() / n
        (grad,) = torch.autograd.grad(config.beta_adv * adv + config.beta_shared * share, d)
        with torch.no_grad():
            d = (d - config.step_size * grad.sign()).clamp(-config.eps, config.eps)
            d = (x + d).clamp(0, 1) - x
        if bool(shared.all()):
            break
    return d.detach()


def shared_adversarial_loss(logits_adv: Tensor, pred_ref_adv: Tensor, fooled_ref: Tensor) -> Tensor:
    """``L_sar``: mean over the batch of ``-log(1 - p(k0))`` on the samples where the reference is fooled.

    ``k0 = pred_ref_adv`` is the reference model's class of the perturbed input; the probability is clamped to
    [1e-3, 0.999] so that a confidently shared mistake gives a large but finite loss.
    """
    if not bool(fooled_ref.any()):
        return logits_adv.sum() * 0.0
    p = F.softmax(logits_adv, 1).gather(1, pred_ref_adv[:, None]).squeeze(1).clamp(1e-3, 0.999)
    return -(torch.log1p(-p) * fooled_ref).sum() / logits_adv.shape[0]


def _unlearn_step(
    model: nn.Module, reference: nn.Module, x: Tensor, y: Tensor, d: Tensor, config: SAUConfig
) -> tuple[Tensor, dict[str, float]]:
    x_adv = x + d
    logits, logits_adv = model(torch.cat([x, x_adv])).split(x.shape[0])
    with torch.no_grad():
        pred_ref, pred_ref_adv = reference(x).argmax(1), reference(x_adv).argmax(1)
    fooled_ref = (pred_ref_adv != y) & (pred_ref_adv != pred_ref)
    clean = F.cross_entropy(logits, y)
    adv = F.cross_entropy(logits_adv, y)
    sar = shared_adversarial_loss(logits_adv, pred_ref_adv, fooled_ref)
    loss = config.lambda_clean * clean + config.lambda_adv * adv + config.lambda_shared * sar
    shared = (logits_adv.argmax(1) == pred_ref_adv) & fooled_ref
    row = {
        "clean": float(clean.detach()),
        "adv": float(adv.detach()),
        "sar": float(sar.detach()),
        "shared": float(shared.float().mean()),
    }
    return loss, row


@register_defense("sau", SAUConfig)
def sau(model: nn.Module, clean: ArrayData, config: SAUConfig, *, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """SAU on a copy of ``model`` with the defender's clean split; ``model`` itself is never modified.

    Threat model: the defender holds the suspect model and a small clean labelled set (``(N, C, H, W)`` images
    in [0, 1]); the suspect itself (a frozen copy) is the reference ``h0``. Batch order and random starts come
    from a generator seeded with ``seed``. The device is the model's.

    Returns:
        The purified copy (eval mode) and ``{"method": "sau", "config", "history"}`` (per round: mean clean,
        adversarial and shared losses, and the share of perturbed samples still shared-adversarial).

    Example:
        >>> purified, info = sau(model, clean, SAUConfig(rounds=100), seed=0)
    """
    if len(clean) < 2:
        raise ConfigError(f"the clean split has {len(clean)} samples; accepted: at least 2")
    reference = copy.deepcopy(model).eval()
    defended = copy.deepcopy(model).eval()
    device = device_of(defended)
    params = [p for p in defended.parameters() if p.requires_grad]
    pruned = pruned_entries(defended, config.keep_pruned)
    opt = torch.optim.Adam(params, lr=config.lr)
    gen = torch.Generator().manual_seed(seed)
    batch = min(config.batch_size, len(clean))
    total, step = config.rounds * math.ceil(len(clean) / batch), 0
    history: list[dict[str, float]] = []
    with frozen(reference):
        for rnd in range(config.rounds):
            sums: dict[str, float] = {}
            seen = 0
            for x, y in iterate_batches(clean, batch, shuffle=True, generator=gen, device=device):
                step += 1
                with frozen(defended):
                    d = shared_pgd(defended, reference, x, y, config, generator=gen)
                set_lr_(opt, cosine_lr(config.lr, step - 1, total))
                loss, row = _unlearn_step(defended, reference, x, y, d, config)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                zero_pruned_grads_(pruned)
                opt.step()
                zero_pruned_(pruned)
                for k, v in row.items():
                    sums[k] = sums.get(k, 0.0) + v * y.numel()
                seen += y.numel()
            if not all(math.isfinite(v) for v in sums.values()):
                raise ConfigError(f"SAU diverged in round {rnd + 1} ({sums})")
            history.append({"round": rnd + 1, **{k: v / seen for k, v in sums.items()}})
            log_progress(logger, "SAU round", rnd + 1, config.rounds, history[-1])
    defended.eval()
    return defended, {"method": "sau", "config": asdict(config), "history": history}
