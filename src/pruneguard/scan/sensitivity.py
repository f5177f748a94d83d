"""Neuron-sensitivity scan: ANP's observation used as a diagnostic of an untrusted model.

Wu & Wang (NeurIPS 2021, https://arxiv.org/abs/2110.14430) observed that a backdoored network, under small
adversarial perturbations of its neurons (scales and biases), collapses much sooner than a benign one, and that
its errors then go to the attacker's target class: the perturbation switches the backdoor neurons on. The scan
measures exactly that on the defender's clean split, with no retraining and no knowledge of the trigger.

For each budget ``eps`` the scan runs ``restarts`` signed-gradient ascents of ``steps`` steps on neuron noise
(ANP's perturbation of scales and biases with mask = 1, random start, step size ``2.5 eps / steps``, projected to
the eps-ball; BatchNorm on batch statistics via :func:`~pruneguard.utils.modes.anp_mode`) that maximise the
clean loss, then records the perturbed model's error rate on the whole clean split and which classes its errors
go to.

The score is the concentration of the errors: the share of all errors (pooled over budgets and restarts) that go
to the single most frequent class, ``top / (errors + num_classes)`` (the pseudo-count keeps a handful of errors
from scoring high). The suspected target is that class. Per budget the report also gives
``flip = error_rate * top_share``. Measured on pruneguard's own zoo (``benchmarks/scan_zoo.py``), the error
rate mostly tells architectures apart (GAP-CNNs break at smaller budgets, backdoored or not), while where the
errors go tells backdoored models apart: the mean of ``flip`` separated clean from backdoored models with AUROC
0.92 (0.75 on Fashion-MNIST alone), the pooled concentration with 0.99 (1.0).

Threat model: the model may be backdoored by whoever trained it; the defender has a few clean labelled samples.
The model is never modified (noise enters through ``torch.func.functional_call``; running statistics, flags and
``requires_grad`` are restored).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.errors import ConfigError
from pruneguard.pruning.neurons import NeuronReparam, find_neuron_groups, grads_or_zeros
from pruneguard.utils.modes import anp_mode, fast_layout
from pruneguard.utils.progress import track

__all__ = ["ScanConfig", "ScanResult", "scan_model", "flip_rate", "scan_score", "verdict", "DEFAULT_EPS"]

logger = logging.getLogger(__name__)

DEFAULT_EPS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
MAX_STEPS, MAX_RESTARTS, MAX_BATCH_SIZE = 1000, 100, 65536  # sanity caps: larger values are typos


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """Hyperparameters of the neuron-sensitivity scan.

    Attributes:
        eps: neuron perturbation budgets, each in (0, 1] (relative change of a neuron's scale and bias).
        steps: signed-gradient ascent steps per restart (step size ``2.5 eps / steps``, random start).
        restarts: independent ascents per budget; their predictions are pooled.
        batch_size: samples per ascent and per evaluation chunk (>= 4: BatchNorm uses batch statistics).
        threshold: scores above it give the verdict ``suspicious``.
        seed: seeds the random starts and the ascent batches.

    The default ``threshold`` is calibrated on models pruneguard trains itself: ``python benchmarks/scan_zoo.py
    --json`` (12 clean and 12 backdoored small_cnn/gap_cnn models on digits and Fashion-MNIST, BadNets and Blend,
    several seeds and target labels; default scan settings) gave AUROC 0.986, the right target for 12/12
    backdoored models, clean scores 0.19-0.410 and backdoored 0.319-0.838; 0.41 is its best cut (0 of 12 clean
    flagged, 11 of 12 backdoored flagged). The zoo is small and the margin thin: treat scores near 0.41 as
    inconclusive, and recalibrate (``--threshold``) for other architectures and datasets.

    Example:
        >>> result = scan_model(model, clean, ScanConfig(eps=(0.2, 0.4), restarts=2))
        >>> result.verdict, result.suspected_target
    """

    eps: tuple[float, ...] = DEFAULT_EPS
    steps: int = 5
    restarts: int = 3
    batch_size: int = 256
    threshold: float = 0.41
    seed: int = 0

    def __post_init__(self) -> None:
        eps = tuple(self.eps)
        if not eps or not all(isinstance(e, int | float) and math.isfinite(e) and 0.0 < e <= 1.0 for e in eps):
            raise ConfigError(f"--eps={list(self.eps)} is not accepted; accepted: one or more numbers in (0, 1]")
        checks = [
            (
                _is_int(self.steps) and 1 <= self.steps <= MAX_STEPS,
                "--steps",
                self.steps,
                f"an integer in [1, {MAX_STEPS}]",
            ),
            (
                _is_int(self.restarts) and 1 <= self.restarts <= MAX_RESTARTS,
                "--restarts",
                self.restarts,
                f"an integer in [1, {MAX_RESTARTS}]",
            ),
            (
                _is_int(self.batch_size) and 4 <= self.batch_size <= MAX_BATCH_SIZE,
                "--batch-size",
                self.batch_size,
                f"an integer in [4, {MAX_BATCH_SIZE}] (BatchNorm needs batch statistics)",
            ),
            (
                isinstance(self.threshold, int | float) and math.isfinite(self.threshold) and self.threshold >= 0,
                "--threshold",
                self.threshold,
                "a number >= 0",
            ),
            (
                _is_int(self.seed) and -(2**63) <= self.seed < 2**64,
                "--seed",
                self.seed,
                "an integer in [-2**63, 2**64)",
            ),
        ]
        for ok, name, value, accepted in checks:
            if not ok:
                raise ConfigError(f"{name}={value!r} is not accepted; accepted: {accepted}")
        object.__setattr__(self, "eps", tuple(sorted({float(e) for e in eps})))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class ScanResult:
    """What the scan measured. ``curve`` has one row per budget (see :func:`scan_model`).

    ``score`` is :func:`scan_score` of ``errors_by_class`` (errors per predicted class, pooled over budgets and
    restarts); ``suspected_target`` its arg-max and ``target_share`` that class's share of the errors;
    ``baseline_error_rate`` is the unperturbed error rate under batch statistics.
    """

    curve: list[dict[str, Any]]
    score: float
    suspected_target: int | None
    target_share: float
    verdict: str
    threshold: float
    baseline_error_rate: float
    num_classes: int
    neurons: int
    seconds: float = 0.0
    errors_by_class: list[int] = field(default_factory=list)


def flip_rate(error_rate: float, errors_by_class: list[int]) -> float:
    """``error_rate`` times the largest share of the errors going to one class (0 when there are no errors)."""
    total = sum(errors_by_class)
    return float(error_rate) * (max(errors_by_class) / total) if total else 0.0


def scan_score(errors_by_class: list[int]) -> float:
    """Concentration of the errors on one class, ``max / (sum + len)``: near 1 when they pile onto one class."""
    return float(max(errors_by_class) / (sum(errors_by_class) + len(errors_by_class))) if errors_by_class else 0.0


def verdict(score: float, threshold: float) -> str:
    return "suspicious" if score > threshold else "clean"


def _chunks(n: int, batch_size: int) -> tuple[Tensor, ...]:
    """Split ``range(n)`` into near-equal chunks of at most ``batch_size`` (each >= 2 when n >= 2)."""
    return torch.tensor_split(torch.arange(n), max(1, math.ceil(n / batch_size)))


@torch.no_grad()
def _predict(reparam: NeuronReparam, x: Tensor, mask: Tensor, noise: tuple[Tensor, Tensor] | None, bs: int) -> Tensor:
    nw, nb = noise if noise is not None else (None, None)
    return torch.cat([reparam.forward(x[idx], mask, nw, nb).argmax(1) for idx in _chunks(len(x), bs)])


def _ascent(
    reparam: NeuronReparam, x: Tensor, y: Tensor, mask: Tensor, eps: float, steps: int, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Neuron noise in the eps-ball that increases the loss: random start, ``steps`` signed steps of 2.5 eps/steps.

    Like ANP's :func:`~pruneguard.pruning.anp.perturbation_step` with projection, but with PGD's step size so
    that every point of the ball is reachable from any start.
    """
    n, step = reparam.total, 2.5 * eps / steps
    noise_w = (torch.rand(n, generator=gen) * 2 - 1).mul_(eps).to(x.device)
    noise_b = (torch.rand(n, generator=gen) * 2 - 1).mul_(eps).to(x.device)
    for _ in range(steps):
        noise_w.requires_grad_(True)
        noise_b.requires_grad_(True)
        loss = F.cross_entropy(reparam.forward(x, mask, noise_w, noise_b), y)
        g_w, g_b = grads_or_zeros(loss, [noise_w, noise_b])
        with torch.no_grad():
            noise_w = (noise_w + step * g_w.sign()).clamp_(-eps, eps)
            noise_b = (noise_b + step * g_b.sign()).clamp_(-eps, eps)
    return noise_w.detach(), noise_b.detach()


def _budget_row(
    reparam: NeuronReparam,
    x: Tensor,
    y: Tensor,
    eps: float,
    cfg: ScanConfig,
    num_classes: int,
    gen: torch.Generator,
    base_correct: Tensor,
) -> dict[str, Any]:
    mask = torch.ones(reparam.total, device=x.device)
    counts = torch.zeros(num_classes, dtype=torch.long)
    flipped = torch.zeros(num_classes, dtype=torch.long)
    rates = []
    for _ in range(cfg.restarts):
        idx = torch.randperm(len(x), generator=gen)[: cfg.batch_size] if len(x) > cfg.batch_size else None
        xb, yb = (x, y) if idx is None else (x[idx.to(x.device)], y[idx.to(x.device)])
        noise = _ascent(reparam, xb, yb, mask, eps, cfg.steps, gen)
        pred = _predict(reparam, x, mask, noise, cfg.batch_size).cpu()
        wrong = pred != y.cpu()
        rates.append(float(wrong.float().mean()))
        counts += torch.bincount(pred[wrong], minlength=num_classes)[:num_classes]
        flipped += torch.bincount(pred[wrong & base_correct], minlength=num_classes)[:num_classes]
    error_rate = sum(rates) / len(rates)
    by_class = counts.tolist()
    total = sum(by_class)
    return {
        "eps": eps,
        "error_rate": error_rate,
        "error_rate_max": max(rates),
        "errors_by_class": by_class,
        "flipped_by_class": flipped.tolist(),
        "top_class": int(counts.argmax()) if total else None,
        "top_share": max(by_class) / total if total else 0.0,
        "flip": flip_rate(error_rate, by_class),
    }


def scan_model(
    model: nn.Module, data: ArrayData, config: ScanConfig = ScanConfig(), *, progress: bool = False
) -> ScanResult:
    """Measure how ``model`` fails under adversarial neuron perturbations on the clean split ``data``.

    Args:
        model: a classifier with BatchNorm or hidden conv/linear layers; not modified.
        data: the defender's clean split (images in [0, 1] or uint8), at least 2 samples of 2 classes.
        config: budgets, steps, restarts, threshold and seed.
        progress: show a progress bar over the budgets.

    Returns:
        A :class:`ScanResult`; each ``curve`` row holds ``eps``, ``error_rate`` (mean over restarts),
        ``error_rate_max``, ``errors_by_class`` (predicted classes of the errors, pooled over restarts),
        ``top_class``, ``top_share`` and ``flip``.
    """
    if len(data) < 2 or torch.unique(data.y).numel() < 2:
        raise ConfigError(
            f"the clean split has {len(data)} samples of {torch.unique(data.y).numel()} classes; "
            "the scan needs at least 2 samples of 2 classes"
        )
    t0 = time.perf_counter()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x, y = to_float(data.x).to(device), data.y.to(device)
    reparam = NeuronReparam(model, find_neuron_groups(model, x[:2]))
    gen = torch.Generator().manual_seed(config.seed)
    curve = []
    with anp_mode(model), fast_layout(model):
        ones = torch.ones(reparam.total, device=device)
        base = _predict(reparam, x, ones, None, config.batch_size)
        num_classes = max(data.num_classes, int(base.max()) + 1)
        baseline = float((base.cpu() != data.y).float().mean())
        for eps in track(config.eps, desc="scan", total=len(config.eps), enabled=progress):
            curve.append(_budget_row(reparam, x, y, eps, config, num_classes, gen, base.cpu() == data.y))
            logger.info("eps=%.3f error_rate=%.3f top_share=%.3f", eps, curve[-1]["error_rate"], curve[-1]["top_share"])
    totals = [sum(row["errors_by_class"][c] for row in curve) for c in range(num_classes)]
    total = sum(totals)
    score = scan_score(totals)
    return ScanResult(
        curve=curve,
        score=score,
        suspected_target=max(range(num_classes), key=lambda c: totals[c]) if total else None,
        target_share=max(totals) / total if total else 0.0,
        verdict=verdict(score, config.threshold),
        threshold=config.threshold,
        baseline_error_rate=baseline,
        num_classes=num_classes,
        neurons=reparam.total,
        seconds=time.perf_counter() - t0,
        errors_by_class=totals,
    )
