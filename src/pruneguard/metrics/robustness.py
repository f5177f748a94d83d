"""Robustness metrics (pure functions): gradient sensitivity, gradient-masking flags, collapse, verdict.

The flags follow the checks AutoAttack and Carlini et al. ("On Evaluating Adversarial Robustness",
https://arxiv.org/abs/1902.06705) recommend: robust accuracy must fall to about zero as ``eps`` grows; a
gradient-free (Square) or transfer attack must not beat white-box PGD; one-step FGSM must not beat iterative
PGD; input gradients must not be zero; the logits must be deterministic. Each flag carries the numbers that
raised it. Accuracies are fractions in [0, 1]; ``x`` is a float batch ``(N, ...)`` inside
``[clip_min, clip_max]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.utils.modes import eval_mode, frozen

__all__ = [
    "MaskingFlag",
    "input_gradient_norms",
    "local_lipschitz",
    "noise_loss_change",
    "flag_eps_curve",
    "flag_weaker_attack_wins",
    "flag_zero_gradients",
    "flag_nondeterministic",
    "flag_quantized_masking",
    "collapse_reason",
    "robustness_verdict",
]

_NORMS = ("linf", "l2")


@dataclass(frozen=True)
class MaskingFlag:
    """A sign that the robustness evaluation may be unreliable (gradient masking), with its evidence.

    ``check`` names the test (``"eps_curve"``, ``"square_beats_pgd"``, ``"transfer_beats_pgd"``,
    ``"fgsm_beats_pgd"``, ``"zero_gradients"``, ``"nondeterministic"``, ``"int8_masking"``); ``values`` holds
    the numbers that raised it.
    """

    check: str
    message: str
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_norm(norm: str) -> None:
    if norm not in _NORMS:
        raise ValueError(f"norm={norm!r} is not supported; accepted: {', '.join(_NORMS)}")


def _per_example_norm(v: Tensor, norm: str) -> Tensor:
    flat = v.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def _bounds(clip_min: float | Tensor, clip_max: float | Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    as_t = lambda v: torch.as_tensor(v, dtype=x.dtype, device=x.device)  # noqa: E731
    return as_t(clip_min), as_t(clip_max)


def _rand(shape: torch.Size, x: Tensor, generator: torch.Generator | None, normal: bool = False) -> Tensor:
    device = generator.device if generator is not None else x.device
    draw = torch.randn if normal else torch.rand
    return draw(shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _ball_sample(x: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
    """A uniform random point of the ``norm`` ball of radius ``eps`` around each example (not clipped)."""
    if norm == "linf":
        return x + eps * (2 * _rand(x.shape, x, generator) - 1)
    direction = _rand(x.shape, x, generator, normal=True)
    direction = direction / _per_example_norm(direction, "l2").clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
    radius = eps * _rand(torch.Size([x.shape[0]]), x, generator).pow(1.0 / max(1, x[0].numel()))
    return x + direction * radius.view(-1, *[1] * (x.dim() - 1))


def input_gradient_norms(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l2") -> Tensor:
    """Per-example norm of the input gradient of the cross-entropy, ``(N,)``.

    ``norm="l2"`` gives ``||grad||_2``; ``norm="linf"`` gives the dual ``||grad||_1`` (the first-order loss
    increase of an L-inf step of size 1). Computed in eval mode; the model's flags are restored.
    """
    _check_norm(norm)
    with eval_mode(model), frozen(model), torch.enable_grad():
        x_in = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_in), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_in)
    flat = grad.flatten(1)
    return flat.abs().sum(dim=1) if norm == "linf" else flat.norm(dim=1)


def local_lipschitz(
    model: nn.Module,
    x: Tensor,
    *,
    eps: float,
    norm: str = "linf",
    n_random: int = 4,
    steps: int = 5,
    clip_min: float | Tensor = 0.0,
    clip_max: float | Tensor = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Empirical local Lipschitz constant per example, ``(N,)``: ``max ||f(x') - f(x)||_2 / ||x' - x||``.

    The neighbours ``x'`` are ``n_random`` uniform draws from the ``norm`` ball of radius ``eps`` and one point
    found by ``steps`` of projected gradient ascent on ``||f(x') - f(x)||_2`` (Yang et al. 2020,
    https://arxiv.org/abs/2003.02460). ``f`` are the logits; the input distance uses ``norm``.
    """
    _check_norm(norm)
    if eps <= 0 or n_random < 0 or steps < 0 or n_random + steps == 0:
        raise ValueError(f"eps={eps}, n_random={n_random}, steps={steps}: need eps > 0 and a neighbour")
    lo, hi = _bounds(clip_min, clip_max, x)
    x = x.detach()
    best = torch.zeros(x.shape[0], device=x.device)
    with eval_mode(model), frozen(model):
        with torch.no_grad():
            f0 = model(x)

        def ratio(xp: Tensor) -> Tensor:
            with torch.no_grad():
                num = (model(xp) - f0).flatten(1).norm(dim=1)
            den = _per_example_norm(xp - x, norm)
            return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))

        def project(xp: Tensor) -> Tensor:
            delta = xp - x
            if norm == "linf":
                delta = delta.clamp(-eps, eps)
            else:
                scale = (eps / _per_example_norm(delta, "l2").clamp_min(1e-12)).clamp(max=1.0)
                delta = delta * scale.view(-1, *[1] * (x.dim() - 1))
            return torch.maximum(torch.minimum(x + delta, hi), lo)

        for _ in range(n_random):
            best = torch.maximum(best, ratio(project(_ball_sample(x, eps, norm, generator))))
        if steps:
            xp = project(_ball_sample(x, eps, norm, generator))
            for _ in range(steps):
                with torch.enable_grad():
                    xp = xp.detach().requires_grad_(True)
                    dist = (model(xp) - f0).flatten(1).norm(dim=1).sum()
                    (grad,) = torch.autograd.grad(dist, xp)
                if norm == "linf":
                    step = grad.sign() * (eps / 4)
                else:
                    unit = _per_example_norm(grad, "l2").clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
                    step = grad / unit * (eps / 4)
                xp = project(xp.detach() + step)
            best = torch.maximum(best, ratio(xp))
    return best


def noise_loss_change(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    x_adv: Tensor,
    *,
    norm: str = "linf",
    clip_min: float | Tensor = 0.0,
    clip_max: float | Tensor = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Mean cross-entropy increase under the adversarial perturbation and under random noise of the same norm.

    For each example the noise has the adversarial perturbation's ``norm`` (random signs times its L-inf norm,
    or a random direction with its L2 norm), clipped to the box. An attack that hurts no more than noise of
    its size is a weak attack (or a masked model).
    """
    _check_norm(norm)
    lo, hi = _bounds(clip_min, clip_max, x)
    x, x_adv = x.detach(), x_adv.detach()
    size = _per_example_norm(x_adv - x, norm).view(-1, *[1] * (x.dim() - 1))
    if norm == "linf":
        noise = torch.where(_rand(x.shape, x, generator) < 0.5, -1.0, 1.0).to(x.dtype) * size
    else:
        direction = _rand(x.shape, x, generator, normal=True)
        noise = direction / _per_example_norm(direction, "l2").clamp_min(1e-12).view_as(size) * size
    x_noise = torch.maximum(torch.minimum(x + noise, hi), lo)
    with eval_mode(model), torch.no_grad():
        losses = [F.cross_entropy(model(v), y, reduction="none") for v in (x, x_adv, x_noise)]
    clean, adv, noisy = (float(v.mean()) for v in losses)
    return {"loss_clean": clean, "loss_adv_increase": adv - clean, "loss_noise_increase": noisy - clean}


def flag_eps_curve(
    curve: Sequence[tuple[float, float]], *, near_zero: float = 0.05, tolerance: float = 0.02
) -> MaskingFlag | None:
    """Robust accuracy must fall to about zero at the largest ``eps`` and never rise as ``eps`` grows.

    ``curve`` holds ``(eps, robust_accuracy)`` pairs (any order; the largest eps should be a "break everything"
    budget such as half the input box).
    """
    if not curve:
        return None
    pts = sorted((float(e), float(a)) for e, a in curve)
    big_eps, big_acc = pts[-1]
    rises = [(e1, a0, a1) for (_, a0), (e1, a1) in zip(pts, pts[1:], strict=False) if a1 > a0 + tolerance]
    values: dict[str, Any] = {"largest_eps": big_eps, "accuracy_at_largest_eps": big_acc, "near_zero": near_zero}
    problems = []
    if big_acc > near_zero:
        problems.append(f"robust accuracy is still {big_acc:.3f} at eps={big_eps:g} (expected <= {near_zero:g})")
    if rises:
        e1, a0, a1 = rises[0]
        values["rise"] = {"eps": e1, "from": a0, "to": a1}
        problems.append(f"robust accuracy rises from {a0:.3f} to {a1:.3f} as eps grows to {e1:g}")
    if not problems:
        return None
    return MaskingFlag("eps_curve", "; ".join(problems), values)


def flag_weaker_attack_wins(
    check: str, weaker: str, weaker_acc: float | None, pgd_acc: float | None, *, tolerance: float = 0.01
) -> MaskingFlag | None:
    """A weaker attack (``weaker``: FGSM, Square, transfer) must not leave lower accuracy than white-box PGD."""
    if weaker_acc is None or pgd_acc is None or not weaker_acc < pgd_acc - tolerance:
        return None
    return MaskingFlag(
        check,
        f"{weaker} leaves {weaker_acc:.3f} robust accuracy, below PGD's {pgd_acc:.3f}: PGD's gradients mislead it",
        {f"{weaker}_accuracy": weaker_acc, "pgd_accuracy": pgd_acc, "tolerance": tolerance},
    )


def flag_zero_gradients(grad_norms: Tensor, *, max_share: float = 0.0) -> MaskingFlag | None:
    """Input gradients that are exactly zero (per example) make gradient attacks blind (AutoAttack's check)."""
    n = int(grad_norms.numel())
    zero = int((grad_norms == 0).sum())
    if n == 0 or zero / n <= max_share:
        return None
    return MaskingFlag(
        "zero_gradients",
        f"{zero} of {n} examples have an input gradient of exactly zero",
        {"zero_gradient_examples": zero, "examples": n, "share": zero / n},
    )


def flag_nondeterministic(logits_a: Tensor, logits_b: Tensor, *, rtol: float = 1e-5) -> MaskingFlag | None:
    """Two forward passes on the same inputs must give the same logits (randomised defences need EOT)."""
    diff = float((logits_a - logits_b).abs().max()) if logits_a.numel() else 0.0
    scale = float(logits_a.abs().max()) if logits_a.numel() else 0.0
    if not math.isfinite(diff) or diff > rtol * max(scale, 1.0):
        changed = int((logits_a.argmax(1) != logits_b.argmax(1)).sum())
        return MaskingFlag(
            "nondeterministic",
            f"two forward passes differ by up to {diff:.3g} (logit scale {scale:.3g}); {changed} predictions changed",
            {"max_abs_diff": diff, "logit_scale": scale, "changed_predictions": changed},
        )
    return None


def flag_quantized_masking(
    int8_acc: Mapping[str, float], float_pgd_acc: float, *, margin: float = 0.02
) -> MaskingFlag | None:
    """The int8 model must not look more robust under BPDA / transfer attacks than its float model under PGD."""
    higher = {k: v for k, v in int8_acc.items() if v is not None and v > float_pgd_acc + margin}
    if not higher:
        return None
    worst = max(higher, key=lambda k: higher[k])
    return MaskingFlag(
        "int8_masking",
        f"the int8 model reports {higher[worst]:.3f} robust accuracy under {worst}, more than {margin:.0%} above "
        f"the float model's {float_pgd_acc:.3f} under PGD: quantization masks gradients, it does not add robustness",
        {**{f"int8_{k}": v for k, v in int8_acc.items()}, "float_pgd_accuracy": float_pgd_acc, "margin": margin},
    )


def collapse_reason(
    metrics: Mapping[str, float],
    base: Mapping[str, float],
    *,
    max_acc_drop: float | None,
    acc_key: str = "clean_accuracy",
    robust_key: str | None = None,
) -> str | None:
    """Why a pruned model counts as collapsed (clean accuracy fell more than ``max_acc_drop`` below the dense
    model's, or ``robust_key`` fell below the dense model's), or ``None``. The same rule as ``prune_finetune``.
    """
    if any(not math.isfinite(float(v)) for v in metrics.values()):
        return f"non-finite metrics: {dict(metrics)}"
    if max_acc_drop is not None and base[acc_key] - metrics[acc_key] > max_acc_drop + 1e-12:
        drop = base[acc_key] - metrics[acc_key]
        return f"{acc_key} fell by {drop:.4f} (> max_acc_drop={max_acc_drop}) from {base[acc_key]:.4f}"
    if robust_key is not None and metrics[robust_key] < base[robust_key] - 1e-12:
        return f"{robust_key}={metrics[robust_key]:.4f} fell below the dense model's {base[robust_key]:.4f}"
    return None


def robustness_verdict(
    dense: Mapping[str, float | None],
    pruned: Mapping[str, float | None],
    *,
    n: int,
    flags: Sequence[MaskingFlag | Mapping[str, Any]] = (),
    adversarial_training: str | None = None,
) -> dict[str, Any]:
    """A plain statement of whether pruning helped robustness, derived only from the numbers.

    ``dense``/``pruned`` map attack names (``"clean"``, ``"pgd"``, ``"square"``, ...) to accuracies on the same
    ``n`` test examples. A change counts when it exceeds ``max(0.01, 2 / n)``; a PGD gain counts as real only
    when Square does not contradict it and no masking flag was raised on the pruned model.
    """
    noise = max(0.01, 2.0 / max(1, n))
    d_pgd = _delta(dense, pruned, "pgd")
    d_clean = _delta(dense, pruned, "clean")
    d_square = _delta(dense, pruned, "square")
    checks = sorted({f.check if isinstance(f, MaskingFlag) else str(f["check"]) for f in flags})
    if d_pgd is None:
        helped, text = None, "PGD accuracy was not measured on both models; no conclusion."
    elif d_pgd > noise and (d_square is None or d_square > -noise) and not checks:
        helped, text = True, f"Pruning raised PGD accuracy by {d_pgd:+.3f}"
    elif d_pgd > noise:
        helped = None
        why = f"masking flags {', '.join(checks)}" if checks else f"Square changed by {d_square:+.3f}"
        text = f"PGD accuracy rose by {d_pgd:+.3f}, but the gain is not trustworthy ({why})"
    elif d_pgd < -noise:
        helped, text = False, f"Pruning lowered PGD accuracy by {d_pgd:+.3f}"
    else:
        helped, text = False, f"Pruning did not measurably change PGD accuracy ({d_pgd:+.3f}, noise level {noise:.3f})"
    if d_clean is not None:
        text += f"; clean accuracy changed by {d_clean:+.3f}"
    text += f" (n={n} test examples)."
    if adversarial_training and helped:
        text += (
            f" The pruned model was adversarially fine-tuned ({adversarial_training}): the gain may come from the"
            " adversarial training, not from pruning."
        )
    return {
        "helped": helped,
        "statement": text,
        "delta_pgd": d_pgd,
        "delta_clean": d_clean,
        "delta_square": d_square,
        "noise_level": noise,
        "flags": checks,
    }


def _delta(a: Mapping[str, float | None], b: Mapping[str, float | None], key: str) -> float | None:
    va, vb = a.get(key), b.get(key)
    return None if va is None or vb is None else float(vb) - float(va)
