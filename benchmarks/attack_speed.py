"""PGD speed: pruneguard's ``pgd`` vs a bare PyTorch loop vs ART's ProjectedGradientDescentPyTorch.

All three run L-inf PGD, 20 steps, no random start and no restarts, on the zoo's ``small_cnn`` (1x28x28, 10
classes) with a random batch of 256. The candidates are interleaved (their order rotates every repeat) and the
median wall time of each is reported.

Usage:
    python benchmarks/attack_speed.py --json --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.evasion import pgd
from pruneguard.models import create_model

EPS, STEP_SIZE, STEPS = 8 / 255, 2 / 255, 20


def bare_loop(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The minimal correct PGD loop (model in eval mode with frozen parameters, set up by the caller)."""
    x_adv = x.clone()
    for _ in range(STEPS):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + STEP_SIZE * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS).clamp(0.0, 1.0)
    return x_adv


def _art_runner(model: nn.Module, x: Tensor, y: Tensor) -> Callable[[], object]:
    from art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_pytorch import (
        ProjectedGradientDescentPyTorch,
    )
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    attack = ProjectedGradientDescentPyTorch(
        classifier,
        norm=np.inf,
        eps=EPS,
        eps_step=STEP_SIZE,
        max_iter=STEPS,
        num_random_init=0,
        batch_size=len(x),
        verbose=False,
    )
    x_np, y_np = x.numpy(), y.numpy()
    return lambda: attack.generate(x_np, y_np)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each candidate (default 5)")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = create_model("small_cnn", num_classes=10, input_shape=(1, 28, 28)).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    bare_model = copy.deepcopy(model).requires_grad_(False)  # the bare loop's one-time setup, outside the timing

    candidates: dict[str, Callable[[], object]] = {
        "pgd": lambda: pgd(model, x, y, eps=EPS, step_size=STEP_SIZE, steps=STEPS, random_start=False),
        "bare_loop": lambda: bare_loop(bare_model, x, y),
        "art": _art_runner(copy.deepcopy(model), x, y),
    }
    check = float(
        (pgd(model, x, y, eps=EPS, step_size=STEP_SIZE, steps=STEPS, random_start=False) - bare_loop(bare_model, x, y))
        .abs()
        .max()
    )
    for run in candidates.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order each repeat
            start = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    result = {
        "pgd_over_bare_loop": round(med["pgd"] / med["bare_loop"], 3),
        "pgd_over_art": round(med["pgd"] / med["art"], 3),
        "pgd_s": round(med["pgd"], 4),
        "bare_loop_s": round(med["bare_loop"], 4),
        "art_s": round(med["art"], 4),
        "max_abs_diff_pgd_vs_bare_loop": check,
        "settings": {
            "model": "small_cnn",
            "input": [1, 28, 28],
            "batch": args.batch,
            "norm": "linf",
            "eps": EPS,
            "step_size": STEP_SIZE,
            "steps": STEPS,
            "threads": args.threads,
            "repeats": args.repeats,
            "torch": torch.__version__,
        },
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
