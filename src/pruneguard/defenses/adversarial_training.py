"""Adversarial fine-tuning: PGD-AT (Madry et al. 2018, https://arxiv.org/abs/1706.06083) and TRADES
(Zhang et al. 2019, https://arxiv.org/abs/1901.08573).

Threat model: L-inf perturbations of radius ``eps`` on inputs in [0, 1]. The model is fine-tuned in place.

- ``method="pgd"`` minimises the cross-entropy on PGD examples that maximise the cross-entropy (random start
  in the eps-ball, ``steps`` signed-gradient steps of ``step_size``).
- ``method="trades"`` minimises ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))`` where ``x_adv`` maximises that
  KL term, started at ``x + 0.001 * N(0, 1)`` as in the reference code.

Adversarial examples are crafted with the model in eval mode (BatchNorm running statistics untouched, as in
the TRADES reference); the update is taken in train mode. The inner attack is this module's own minimal PGD.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData, iterate_batches
from pruneguard.errors import ConfigError
from pruneguard.utils.modes import eval_mode, frozen

__all__ = ["AdversarialTrainResult", "adversarial_finetune", "pgd_linf", "trades_adversary"]

logger = logging.getLogger(__name__)
_METHODS = ("pgd", "trades")


@dataclass
class AdversarialTrainResult:
    """Per-epoch history: training loss, clean accuracy and accuracy on the crafted examples."""

    method: str
    history: list[dict[str, float]] = field(default_factory=list)


def _ascend(
    model: nn.Module,
    x: Tensor,
    x_adv: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    *,
    eps: float,
    step_size: float,
    steps: int,
) -> Tensor:
    """Signed-gradient ascent on ``loss_fn(model(x_adv))``, projected to the eps-ball and [0, 1]."""
    with eval_mode(model), frozen(model):
        for _ in range(steps):
            x_adv = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = loss_fn(model(x_adv))
                (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)
    return x_adv.detach()


def pgd_linf(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Untargeted L-inf PGD on the cross-entropy; ``x`` ``(N, ...)`` in [0, 1] -> ``x_adv`` of the same shape.

    The model's training flags and ``requires_grad`` are restored.
    """
    x = x.detach()
    x_adv = x
    if random_start and eps > 0:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x_adv = (x + (2 * noise - 1) * eps).clamp(0.0, 1.0)
    return _ascend(
        model, x, x_adv, lambda logits: F.cross_entropy(logits, y), eps=eps, step_size=step_size, steps=steps
    )


def trades_adversary(
    model: nn.Module,
    x: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """TRADES' inner maximisation: ``x_adv`` that maximises ``KL(f(x) || f(x_adv))`` within the eps-ball."""
    x = x.detach()
    with torch.no_grad(), eval_mode(model):
        p_clean = F.softmax(model(x), dim=1)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    x_adv = (x + 0.001 * noise).clamp(0.0, 1.0)

    def kl(logits: Tensor) -> Tensor:
        return F.kl_div(F.log_softmax(logits, dim=1), p_clean, reduction="sum")

    return _ascend(model, x, x_adv, kl, eps=eps, step_size=step_size, steps=steps)


def _validate(
    epochs: int,
    eps: float,
    step_size: float,
    steps: int,
    method: str,
    beta: float,
    lr: float,
    batch_size: int,
) -> None:
    checks = [
        (isinstance(epochs, int) and epochs >= 1, "epochs", epochs, "an integer >= 1", ""),
        (
            0.0 <= eps <= 1.0 and math.isfinite(eps),
            "eps",
            eps,
            "[0, 1]",
            " — inputs are in [0, 1]; did you mean eps/255?" if eps > 1 else "",
        ),
        (0.0 < step_size <= 1.0, "step_size", step_size, "(0, 1]", ""),
        (isinstance(steps, int) and steps >= 1, "steps", steps, "an integer >= 1", ""),
        (method in _METHODS, "method", method, ", ".join(_METHODS), ""),
        (beta >= 0 and math.isfinite(beta), "beta", beta, "a number >= 0", ""),
        (lr > 0 and math.isfinite(lr), "lr", lr, "a positive number", ""),
        (isinstance(batch_size, int) and batch_size >= 2, "batch_size", batch_size, "an integer >= 2", ""),
    ]
    for ok, name, value, accepted, hint in checks:
        if not ok:
            raise ConfigError(f"{name}={value!r} is not accepted; accepted: {accepted}{hint}")


def adversarial_finetune(
    model: nn.Module,
    data: ArrayData,
    *,
    epochs: int,
    eps: float,
    step_size: float,
    steps: int,
    method: str = "pgd",
    beta: float = 6.0,
    lr: float,
    batch_size: int,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    generator: torch.Generator | None = None,
) -> AdversarialTrainResult:
    """Fine-tune ``model`` in place with PGD-AT or TRADES on ``data`` (SGD, constant ``lr``).

    ``generator`` drives the batch order and the attacks' random starts (seed it for reproducibility). Masked
    (pruned) weights stay zero: the ``torch.nn.utils.prune`` hooks are respected. The model ends in eval mode.

    Example:
        >>> adversarial_finetune(model, clean, epochs=5, eps=8/255, step_size=2/255, steps=10, lr=0.01,
        ...                      batch_size=128, method="trades", generator=torch.Generator().manual_seed(0))
    """
    _validate(epochs, eps, step_size, steps, method, beta, lr, batch_size)
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    result = AdversarialTrainResult(method)
    for epoch in range(epochs):
        total, loss_sum, correct, correct_adv = 0, 0.0, 0, 0
        for x, y in iterate_batches(data, batch_size, shuffle=True, generator=generator, device=device):
            if x.shape[0] < 2:
                continue
            if method == "pgd":
                x_adv = pgd_linf(model, x, y, eps=eps, step_size=step_size, steps=steps, generator=generator)
            else:
                x_adv = trades_adversary(model, x, eps=eps, step_size=step_size, steps=steps, generator=generator)
            model.train()
            logits_adv = model(x_adv)
            if method == "pgd":
                loss = F.cross_entropy(logits_adv, y)
                with torch.no_grad(), eval_mode(model):
                    logits = model(x)
            else:
                logits = model(x)
                kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="batchmean")
                loss = F.cross_entropy(logits, y) + beta * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += y.numel()
            loss_sum += float(loss.detach()) * y.numel()
            correct += int((logits.argmax(1) == y).sum())
            correct_adv += int((logits_adv.argmax(1) == y).sum())
        if total == 0 or not math.isfinite(loss_sum):
            raise ConfigError(f"adversarial fine-tuning diverged or saw no data in epoch {epoch + 1}")
        row = {
            "epoch": epoch + 1,
            "loss": loss_sum / total,
            "accuracy": correct / total,
            "adv_accuracy": correct_adv / total,
        }
        result.history.append(row)
        logger.info(
            "%s epoch %d: loss %.4f, acc %.4f, adv acc %.4f",
            method,
            epoch + 1,
            row["loss"],
            row["accuracy"],
            row["adv_accuracy"],
        )
    model.eval()
    return result
