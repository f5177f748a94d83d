"""I-BAU (Zeng et al., ICLR 2022): minimax unlearning of a universal perturbation through the implicit hypergradient.

Paper: "Adversarial Unlearning of Backdoors via Implicit Hypergradient", https://arxiv.org/abs/2110.03735 .
The defence solves ``min_theta max_d (1/n) sum_i L(f_theta(x_i + d), y_i)`` with one *universal* perturbation
``d`` (shape ``(1, C, H, W)``, like a trigger). Each round:

1. Inner maximisation: a fresh ``d = 0`` takes one pass of SGD steps (lr ``inner_lr``) over the clean batches on
   ``psi(d, theta) = -CE(f(x + d), y) + reg * ||d||^2``, then is projected on the L2 ball of radius ``eps``.
2. Outer minimisation, one Adam step per clean batch on the *implicit* hypergradient of the outer loss
   ``L(d, theta) = CE(f(x + m * d), y)`` (``m`` marks a random ``perturbed_share`` of the batch, at least one
   image) at the inner solution ``d*(theta)``. The inner solution is the fixed point of the gradient map
   ``Phi(d, theta) = d - alpha * grad_d psi(d, theta)``, so by the implicit function theorem
   ``dL/dtheta = L_theta + Phi_theta^T v`` with ``v = (I - Phi_d^T)^{-1} L_d``. ``v`` is found by ``K`` fixed-point
   iterations ``v <- Phi_d^T v + L_d`` (the solver of the authors' code; conjugate gradients, the other solver
   the paper names, would solve the same linear system), each one vector-Jacobian product through ``Phi``, so no
   Hessian is ever formed. The iteration converges when ``Phi`` contracts near ``d*``.

The model stays in eval mode throughout, as in the authors' code. Weights that are exactly zero (pruned) get no
update with ``keep_pruned``.

Scaling: BackdoorBench's port of the authors' code unlearns a PreAct-ResNet-18 with 5% of CIFAR-10 (2,500 images,
batch 256: about 10 outer steps per round) for 5 rounds, K 5, Adam lr 1e-4, inner SGD lr 10, reg 0.001,
fixed-point map step 0.1 and 1% of each batch perturbed in the outer loss; the authors' code carries an optional
L2 bound of 10 on the perturbation of normalised CIFAR inputs (3,072 values, std about 0.25), off in that port.
We have about 600 clean images (1% of Fashion-MNIST, 28x28x1 in [0, 1]): batch 64 keeps about 10 outer steps per
round; the L2 bound is on, kept per input value in pixel units, ``10 * 0.25 * sqrt(784 / 3072) = 1.26``, because
the weak penalty alone lets the perturbation grow far past a trigger's size (an L2 norm of several hundred on
the digits test toy); the other settings are kept, and the perturbed share of a 64-image batch is one image
(at least one, as 1% of it rounds to zero).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData, iterate_batches
from pruneguard.defenses._loop import device_of, pruned_entries, zero_pruned_, zero_pruned_grads_
from pruneguard.defenses.registry import check, in_range, is_int, is_positive, register_defense
from pruneguard.errors import ConfigError
from pruneguard.utils.modes import eval_mode, frozen

__all__ = ["IBAUConfig", "i_bau", "implicit_hypergradient", "universal_perturbation"]


@dataclass(frozen=True, slots=True)
class IBAUConfig:
    """I-BAU settings (defaults: the paper's, scaled to ~600 clean images; see the module docstring)."""

    rounds: int = 5
    fixed_point_iters: int = 5
    lr: float = 1e-4
    batch_size: int = 64
    inner_lr: float = 10.0
    reg: float = 0.001
    eps: float | None = 1.26
    fp_step: float = 0.1
    perturbed_share: float = 0.01
    keep_pruned: bool = True

    def __post_init__(self) -> None:
        check(is_int(self.rounds, 1), "rounds", self.rounds, "an integer >= 1")
        check(is_int(self.fixed_point_iters, 1), "fixed_point_iters", self.fixed_point_iters, "an integer >= 1")
        check(is_positive(self.lr), "lr", self.lr, "a positive number")
        check(is_int(self.batch_size, 2), "batch_size", self.batch_size, "an integer >= 2")
        check(is_positive(self.inner_lr), "inner_lr", self.inner_lr, "a positive number")
        check(in_range(self.reg, 0.0, math.inf), "reg", self.reg, "a number >= 0")
        check(self.eps is None or is_positive(self.eps), "eps", self.eps, "None (no bound) or a positive L2 radius")
        check(is_positive(self.fp_step), "fp_step", self.fp_step, "a positive number")
        ok = in_range(self.perturbed_share, 0.0, 1.0) and self.perturbed_share > 0
        check(ok, "perturbed_share", self.perturbed_share, "a number in (0, 1]")


def _inner_loss(model: nn.Module, x: Tensor, y: Tensor, d: Tensor, reg: float) -> Tensor:
    """``psi(d, theta) = -CE(f(x + d), y) + reg * ||d||^2`` (minimised over ``d``: the loss is maximised)."""
    return -F.cross_entropy(model(x + d), y) + reg * d.pow(2).sum()


def universal_perturbation(model: nn.Module, clean: ArrayData, config: IBAUConfig, gen: torch.Generator) -> Tensor:
    """Step 1 of the module docstring: one pass of SGD on ``psi`` over shuffled clean batches, ``(1, C, H, W)``.

    The model's weights get no gradient; its flags are restored.
    """
    device = device_of(model)
    d = torch.zeros((1, *clean.x.shape[1:]), device=device, requires_grad=True)
    opt = torch.optim.SGD([d], lr=config.inner_lr)
    with eval_mode(model), frozen(model):
        for x, y in iterate_batches(clean, config.batch_size, shuffle=True, generator=gen, device=device):
            opt.zero_grad(set_to_none=True)
            _inner_loss(model, x, y, d, config.reg).backward()
            opt.step()
    d = d.detach()
    if config.eps is not None:
        d = d * min(1.0, config.eps / max(float(d.norm()), 1e-12))
    return d


def implicit_hypergradient(
    model: nn.Module,
    params: list[nn.Parameter],
    d: Tensor,
    x: Tensor,
    y: Tensor,
    config: IBAUConfig,
    perturbed: Tensor,
) -> list[Tensor]:
    """Step 2 of the module docstring: ``L_theta + Phi_theta^T v``, ``v`` from ``K`` fixed-point iterations.

    ``perturbed`` is a boolean mask ``(N,)`` of the batch images that carry ``d`` in the outer loss.
    """
    d = d.detach().requires_grad_(True)
    outer = F.cross_entropy(model(x + perturbed[:, None, None, None].to(x.dtype) * d), y)
    grads = torch.autograd.grad(outer, [d, *params], allow_unused=True)
    g_d = grads[0]
    g_theta = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads[1:], strict=True)]
    # Phi(d, theta) = d - alpha * grad_d psi(d, theta), kept as a graph in d and theta
    (psi_d,) = torch.autograd.grad(_inner_loss(model, x, y, d, config.reg), d, create_graph=True)
    mapped = d - config.fp_step * psi_d
    v = torch.zeros_like(d)
    for _ in range(config.fixed_point_iters):
        (jv,) = torch.autograd.grad(mapped, d, grad_outputs=v, retain_graph=True)
        v = jv + g_d
    cross = torch.autograd.grad(mapped, params, grad_outputs=v, allow_unused=True)
    return [g + (torch.zeros_like(g) if c is None else c) for g, c in zip(g_theta, cross, strict=True)]


@register_defense("i_bau", IBAUConfig)
def i_bau(model: nn.Module, clean: ArrayData, config: IBAUConfig, *, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """I-BAU on a copy of ``model`` with the defender's clean split; ``model`` itself is never modified.

    Threat model: the defender holds the suspect model and a small clean labelled set (``(N, C, H, W)`` images
    in [0, 1]). Batch order and the perturbed images come from a generator seeded with ``seed``. The device is
    the model's.

    Returns:
        The purified copy (eval mode) and ``{"method": "i_bau", "config", "history"}`` (per round: the
        perturbation's L2 norm, the loss on the clean set carrying it after the round, and the mean loss of the
        clean batches after their steps).

    Example:
        >>> purified, info = i_bau(model, clean, IBAUConfig(rounds=5), seed=0)
    """
    if len(clean) < 2:
        raise ConfigError(f"the clean split has {len(clean)} samples; accepted: at least 2")
    if clean.x.dim() != 4:
        raise ConfigError(f"clean data of shape {tuple(clean.x.shape)} is not accepted; accepted: images")
    defended = copy.deepcopy(model).eval()
    device = device_of(defended)
    params = [p for p in defended.parameters() if p.requires_grad]
    pruned = pruned_entries(defended, config.keep_pruned)
    opt = torch.optim.Adam(params, lr=config.lr)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    for rnd in range(config.rounds):
        d = universal_perturbation(defended, clean, config, gen)
        outer_sum, seen = 0.0, 0
        for x, y in iterate_batches(clean, config.batch_size, shuffle=True, generator=gen, device=device):
            n = x.shape[0]
            chosen = torch.randperm(n, generator=gen)[: max(1, int(n * config.perturbed_share))]
            perturbed = torch.zeros(n, dtype=torch.bool)
            perturbed[chosen] = True
            hyper = implicit_hypergradient(defended, params, d, x, y, config, perturbed.to(device))
            for p, g in zip(params, hyper, strict=True):
                p.grad = g.detach()
            zero_pruned_grads_(pruned)
            opt.step()
            zero_pruned_(pruned)
            with torch.no_grad():
                outer_sum += float(F.cross_entropy(defended(x), y)) * n
            seen += n
        with torch.no_grad():
            x_all, y_all = clean.float_x().to(device), clean.y.to(device)
            adv_loss = float(F.cross_entropy(defended(x_all + d), y_all))
        if not math.isfinite(outer_sum):
            raise ConfigError(f"I-BAU diverged in round {rnd + 1} (loss={outer_sum})")
        history.append({"round": rnd + 1, "norm": float(d.norm()), "adv_loss": adv_loss, "loss": outer_sum / seen})
    defended.eval()
    return defended, {"method": "i_bau", "config": asdict(config), "history": history}
