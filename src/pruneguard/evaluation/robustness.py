"""Robustness runners: models x evasion attacks x data -> accuracies, eps sweeps, sensitivity and masking flags.

Robust accuracy counts an example as robust when the model classifies it correctly both clean and under the
attack (AutoAttack's convention), so it never exceeds clean accuracy. Every attack gets a fresh generator
seeded with ``RobustnessSpec.seed``: two models evaluated with one spec face the same random starts.

Tabular models are attacked through :class:`~pruneguard.evaluation.feature_box.FeatureBox` (``eps`` in
standard deviations of each feature, every feature inside the data's ``[min, max]``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pruneguard.attacks.evasion import FGSM, PGD, Square
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import finite_logits
from pruneguard.metrics.robustness import (
    MaskingFlag,
    flag_eps_curve,
    flag_nondeterministic,
    flag_weaker_attack_wins,
    flag_zero_gradients,
    input_gradient_norms,
    local_lipschitz,
    noise_loss_change,
)
from pruneguard.utils.modes import eval_mode
from pruneguard.utils.seed import make_generator

__all__ = [
    "RobustnessSpec",
    "AttackResult",
    "correct_mask",
    "run_attack",
    "score_adversarial",
    "eps_sweep",
    "gradient_sensitivity",
    "forward_twice",
    "masking_flags",
    "evaluate_robustness",
    "transfer_matrix",
    "latency_ms",
    "parameter_counts",
]


@dataclass(frozen=True, slots=True)
class RobustnessSpec:
    """The evaluation protocol. Budgets are in attack-space units ([0, 1] images or a ``FeatureBox``);
    ``eps_unit`` converts them to the user's units in results (the ``FeatureBox.width`` for tabular data).

    PGD uses ``steps`` steps of ``2.5 * eps / steps`` with a random start; FGSM is one L-inf step (for
    ``norm="l2"`` one normalised-gradient step, FGM); Square runs ``square_queries`` queries (``None``: off).
    ``sweep`` lists the budgets of the eps-sweep curve (its largest should break any model, e.g. 0.5).
    ``clip_min``/``clip_max`` bound the gradient attacks (tensors give per-feature boxes, see
    ``FeatureBox.unit_bounds``); Square runs in [0, 1] (a ``FeatureBox`` clamps inside).
    """

    eps: float
    norm: str = "linf"
    steps: int = 20
    square_queries: int | None = 1000
    sweep: tuple[float, ...] = ()
    eps_unit: float = 1.0
    batch_size: int = 256
    seed: int = 0
    sensitivity_samples: int = 256
    lipschitz_random: int = 4
    lipschitz_steps: int = 5
    clip_min: float | Tensor = 0.0
    clip_max: float | Tensor = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.eps, int | float) or not self.eps > 0:
            raise ConfigError(f"eps={self.eps!r} is not accepted; accepted: a number > 0")
        self.pgd()
        for e in self.sweep:
            self.pgd(e)
        if self.square_queries is not None and self.square_queries < 1:
            raise ConfigError(f"square_queries={self.square_queries} must be None or >= 1")

    def pgd(self, eps: float | None = None) -> PGD:
        e = self.eps if eps is None else float(eps)
        return PGD(
            eps=e,
            step_size=2.5 * e / self.steps,
            steps=self.steps,
            norm=self.norm,
            clip_min=self.clip_min,  # type: ignore[arg-type]  # tensors: per-feature boxes
            clip_max=self.clip_max,  # type: ignore[arg-type]
        )

    def fgsm(self) -> FGSM | PGD:
        box: dict[str, Any] = {"clip_min": self.clip_min, "clip_max": self.clip_max}
        if self.norm == "linf":
            return FGSM(eps=self.eps, **box)
        return PGD(eps=self.eps, step_size=self.eps, steps=1, norm="l2", random_start=False, **box)

    def square(self) -> Square | None:
        return (
            None if self.square_queries is None else Square(eps=self.eps, norm=self.norm, n_queries=self.square_queries)
        )

    def tolerance(self, n: int) -> float:
        """How much a weaker attack may beat PGD before it is flagged: 1 point, and more than one example."""
        return max(0.01, 1.5 / max(1, n))


@dataclass
class AttackResult:
    """One attack on one model: ``robust_accuracy`` = correct clean and under attack, over all ``n``."""

    attack: str
    n: int
    clean_accuracy: float
    robust_accuracy: float
    success_rate: float | None
    mean_perturbation: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


@torch.no_grad()
def correct_mask(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 512) -> Tensor:
    """``(N,)`` bool: the model's arg-max equals ``y`` (eval mode, flags restored)."""
    with eval_mode(model):
        out = [finite_logits(model(x[s])).argmax(1) == y[s] for s in _chunks(len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def _norms(delta: Tensor, norm: str) -> Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def score_adversarial(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    x_adv: Tensor,
    *,
    name: str,
    norm: str = "linf",
    clean_correct: Tensor | None = None,
    seconds: float = 0.0,
    batch_size: int = 512,
) -> AttackResult:
    """Score adversarial examples (crafted on any model) against ``model``."""
    ok = correct_mask(model, x, y, batch_size=batch_size) if clean_correct is None else clean_correct
    robust = ok & correct_mask(model, x_adv, y, batch_size=batch_size)
    n, n_ok = int(y.numel()), int(ok.sum())
    return AttackResult(
        attack=name,
        n=n,
        clean_accuracy=n_ok / n if n else float("nan"),
        robust_accuracy=int(robust.sum()) / n if n else float("nan"),
        success_rate=(n_ok - int(robust.sum())) / n_ok if n_ok else None,
        mean_perturbation=float(_norms(x_adv - x, norm).mean()) if n else 0.0,
        seconds=seconds,
    )


def run_attack(
    model: nn.Module,
    attack: Any,
    x: Tensor,
    y: Tensor,
    *,
    name: str | None = None,
    norm: str = "linf",
    batch_size: int = 256,
    generator: torch.Generator | None = None,
    clean_correct: Tensor | None = None,
) -> tuple[AttackResult, Tensor]:
    """Run ``attack`` on ``model`` in batches; return its score and the adversarial examples ``(N, ...)``."""
    t0 = time.perf_counter()
    parts = [attack(model, x[s], y[s], generator=generator) for s in _chunks(len(x), batch_size)]
    x_adv = torch.cat(parts) if parts else x.clone()
    seconds = time.perf_counter() - t0
    label = name or str(getattr(attack, "name", type(attack).__name__))
    result = score_adversarial(model, x, y, x_adv, name=label, norm=norm, clean_correct=clean_correct, seconds=seconds)
    return result, x_adv


def eps_sweep(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    spec: RobustnessSpec,
    *,
    clean_correct: Tensor | None = None,
) -> tuple[list[dict[str, Any]], list[Tensor]]:
    """PGD robust accuracy at every budget of ``spec.sweep``: rows ``{eps, robust_accuracy, success_rate}``
    (``eps`` in user units) and the adversarial examples of each budget (to score transfer on other models)."""
    rows, advs = [], []
    ok = correct_mask(model, x, y) if clean_correct is None else clean_correct
    for e in spec.sweep:
        res, x_adv = run_attack(
            model,
            spec.pgd(e),
            x,
            y,
            norm=spec.norm,
            batch_size=spec.batch_size,
            generator=make_generator(spec.seed),
            clean_correct=ok,
        )
        rows.append(
            {"eps": e * spec.eps_unit, "robust_accuracy": res.robust_accuracy, "success_rate": res.success_rate}
        )
        advs.append(x_adv)
    return rows, advs


def gradient_sensitivity(
    model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, spec: RobustnessSpec
) -> tuple[dict[str, float], Tensor]:
    """Input-gradient norms, local Lipschitz estimates and loss change under adversarial vs random noise, on
    the first ``spec.sensitivity_samples`` examples; also returns the per-example gradient norms."""
    k = min(len(x), spec.sensitivity_samples)
    gen = make_generator(spec.seed)
    grads, lips, noise = [], [], []
    for s in _chunks(k, spec.batch_size):
        grads.append(input_gradient_norms(model, x[s], y[s], norm=spec.norm))
        lips.append(
            local_lipschitz(
                model,
                x[s],
                eps=spec.eps,
                norm=spec.norm,
                n_random=spec.lipschitz_random,
                steps=spec.lipschitz_steps,
                clip_min=spec.clip_min,
                clip_max=spec.clip_max,
                generator=gen,
            )
        )
        part = noise_loss_change(
            model, x[s], y[s], x_adv[s], norm=spec.norm, clip_min=spec.clip_min, clip_max=spec.clip_max, generator=gen
        )
        noise.append((s.stop - s.start, part))
    g, lip = torch.cat(grads), torch.cat(lips)
    weighted = {key: sum(w * p[key] for w, p in noise) / max(1, k) for key in noise[0][1]} if noise else {}
    unit = spec.eps_unit  # gradients and Lipschitz constants per user unit of input distance
    return {
        "samples": k,
        "input_gradient_norm_mean": float(g.mean()) / unit,
        "input_gradient_norm_median": float(g.median()) / unit,
        "zero_gradient_share": float((g == 0).float().mean()),
        "lipschitz_mean": float(lip.mean()) / unit,
        "lipschitz_max": float(lip.max()) / unit,
        **weighted,
    }, g


@torch.no_grad()
def forward_twice(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Two forward passes on ``x`` in the model's *current* mode (as deployed): their logits."""
    return model(x), model(x)


def masking_flags(
    attacks: Mapping[str, Mapping[str, Any]],
    sweep: list[dict[str, Any]],
    *,
    tolerance: float,
    grad_norms: Tensor | None = None,
    logits: tuple[Tensor, Tensor] | None = None,
) -> list[MaskingFlag]:
    """Every masking check that the measurements allow (see :mod:`pruneguard.metrics.robustness`)."""
    pgd = attacks.get("pgd", {}).get("robust_accuracy")
    found = [flag_eps_curve([(r["eps"], r["robust_accuracy"]) for r in sweep], tolerance=tolerance)]
    if "fgsm" in attacks:
        found.append(
            flag_weaker_attack_wins(
                "fgsm_beats_pgd", "fgsm", attacks["fgsm"]["robust_accuracy"], pgd, tolerance=tolerance
            )
        )
    if "square" in attacks:
        found.append(
            flag_weaker_attack_wins(
                "square_beats_pgd", "square", attacks["square"]["robust_accuracy"], pgd, tolerance=tolerance
            )
        )
    for name, res in attacks.items():
        if name.startswith("transfer"):
            found.append(
                flag_weaker_attack_wins("transfer_beats_pgd", name, res["robust_accuracy"], pgd, tolerance=tolerance)
            )
    if grad_norms is not None:
        found.append(flag_zero_gradients(grad_norms))
    if logits is not None:
        found.append(flag_nondeterministic(*logits))
    return [f for f in found if f is not None]


def evaluate_robustness(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    spec: RobustnessSpec,
    *,
    transfer_from: Mapping[str, Mapping[str, Tensor]] | None = None,
    sensitivity: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Clean accuracy, FGSM, PGD, Square, transfer, an eps sweep, gradient sensitivity and masking flags.

    Args:
        model: the model scored (for an int8 model: ``BPDAWrapper(int8, float)``, with ``sensitivity=False``).
        x, y: float inputs inside the spec's box and labels (``(N, C, H, W)`` for Square; skipped otherwise).
        transfer_from: ``{source: {attack: x_adv}}`` crafted on other models, scored here as
            ``transfer_<attack>_from_<source>``.

    Returns:
        The JSON-ready result and the adversarial examples crafted here (``fgsm``, ``pgd``, ``sweep``) for
        transfer scoring on other models.
    """
    t0 = time.perf_counter()
    ok = correct_mask(model, x, y)
    named: dict[str, Any] = {"fgsm": spec.fgsm(), "pgd": spec.pgd()}
    square = spec.square()
    if square is not None and x.dim() == 4:
        named["square"] = square
    attacks: dict[str, dict[str, Any]] = {}
    advs: dict[str, Any] = {}
    for name, attack in named.items():
        gen = make_generator(spec.seed)
        res, advs[name] = run_attack(
            model, attack, x, y, name=name, norm=spec.norm, batch_size=spec.batch_size, generator=gen, clean_correct=ok
        )
        attacks[name] = res.to_dict()
    for source, crafted in (transfer_from or {}).items():
        for atk, x_adv in crafted.items():
            key = f"transfer_{atk}_from_{source}"
            attacks[key] = score_adversarial(model, x, y, x_adv, name=key, norm=spec.norm, clean_correct=ok).to_dict()
    for entry in attacks.values():  # perturbation sizes in the user's units (std units for tabular data)
        entry["mean_perturbation"] *= spec.eps_unit
    sweep, advs["sweep"] = eps_sweep(model, x, y, spec, clean_correct=ok)
    sens, grads = (None, None)
    if sensitivity:
        sens, grads = gradient_sensitivity(model, x, y, advs["pgd"], spec)
    logits = forward_twice(model, x[: spec.batch_size])
    flags = masking_flags(attacks, sweep, tolerance=spec.tolerance(len(y)), grad_norms=grads, logits=logits)
    result = {
        "n": int(y.numel()),
        "clean_accuracy": float(ok.float().mean()) if len(ok) else float("nan"),
        "attacks": attacks,
        "sweep": sweep,
        "sensitivity": sens,
        "flags": [f.to_dict() for f in flags],
        "seconds": time.perf_counter() - t0,
    }
    return result, advs


def transfer_matrix(
    models: Mapping[str, nn.Module], sweeps: Mapping[str, list[Tensor]], x: Tensor, y: Tensor, spec: RobustnessSpec
) -> list[dict[str, Any]]:
    """Per budget of ``spec.sweep``: the robust accuracy of every model on the examples crafted on every model.

    ``sweeps[source][i]`` are the adversarial examples crafted on ``source`` at ``spec.sweep[i]`` (from
    :func:`eps_sweep`); row keys are ``"<source>_to_<target>"`` (``a_to_a`` is the white-box accuracy).
    """
    ok = {name: correct_mask(m, x, y) for name, m in models.items()}
    rows = []
    for i, e in enumerate(spec.sweep):
        row: dict[str, Any] = {"eps": e * spec.eps_unit}
        for src in sweeps:
            for dst, model in models.items():
                res = score_adversarial(model, x, y, sweeps[src][i], name="", clean_correct=ok[dst])
                row[f"{src}_to_{dst}"] = res.robust_accuracy
        rows.append(row)
    return rows


@torch.no_grad()
def latency_ms(model: nn.Module, x: Tensor, *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of one forward pass on ``x``, in milliseconds (eval mode)."""
    with eval_mode(model):
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters (``params``) and non-zero parameters (``nonzero``) of a float model."""
    params = list(model.parameters())
    return {"params": sum(p.numel() for p in params), "nonzero": sum(int((p != 0).sum()) for p in params)}
