"""PGD speed: pruneguard's ``pgd`` vs a bare PyTorch loop vs ART's ProjectedGradientDescentPyTorch.

All run L-inf PGD, 20 steps, no random start and no restarts, on the zoo's ``small_cnn`` trained for one epoch on
10,000 Fashion-MNIST images (when the files are found; else an untrained model on random data, which fools almost
every example at once), on 256 test images. The candidates are interleaved (their order rotates every repeat) and
the median wall time of each is reported.

- ``pgd_over_bare_loop``: pruneguard's PGD doing every step on every example, vs the minimal correct loop.
- ``pgd_over_art``: the PGD that ``pruneguard attack`` runs (``early_stop``: an example stops once it is fooled,
  keeping the iterate that fooled it) vs ART, which runs every step. Its robust accuracy is printed beside ART's:
  it can only be lower or equal. ``pgd_full_over_art`` is the same-work comparison.

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
from pruneguard.utils.allocator import tune_allocator

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


def _model_and_batch(batch: int) -> tuple[nn.Module, Tensor, Tensor, str]:
    """small_cnn trained one epoch on 10,000 Fashion-MNIST images and ``batch`` test images; without the files,
    an untrained model and random data."""
    from pruneguard.data import load_dataset
    from pruneguard.data.tensors import to_float
    from pruneguard.errors import PruneGuardError
    from pruneguard.models.fit import TrainConfig
    from pruneguard.training.train import train_model

    model = create_model("small_cnn", num_classes=10, input_shape=(1, 28, 28), mean=(0.286,), std=(0.353,))
    try:
        train, test = load_dataset("fashion_mnist", "train"), load_dataset("fashion_mnist", "test")
    except PruneGuardError:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, 1, 28, 28, generator=g)
        return model.eval(), x, torch.randint(0, 10, (batch,), generator=g), "random (Fashion-MNIST not found)"
    train_model(model, train.subset(torch.arange(10000)), TrainConfig(epochs=1, lr=0.05, batch_size=128, seed=0))
    return model.eval(), to_float(test.x[:batch]), test.y[:batch], "fashion_mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each candidate (default 5)")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()  # ${PRUNEGUARD_MALLOC}: tuned (default) or default
    torch.manual_seed(0)

    model, x, y, data = _model_and_batch(args.batch)
    bare_model = copy.deepcopy(model).requires_grad_(False)  # the bare loop's one-time setup, outside the timing
    art = _art_runner(copy.deepcopy(model), x, y)

    candidates: dict[str, Callable[[], object]] = {
        "pgd": lambda: pgd(model, x, y, eps=EPS, step_size=STEP_SIZE, steps=STEPS, random_start=False),
        "pgd_early_stop": lambda: pgd(
            model, x, y, eps=EPS, step_size=STEP_SIZE, steps=STEPS, random_start=False, early_stop=True
        ),
        "bare_loop": lambda: bare_loop(bare_model, x, y),
        "art": art,
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
    adv = {name: candidates[name]() for name in ("pgd", "pgd_early_stop")}
    adv["art"] = torch.from_numpy(art())  # type: ignore[call-overload]
    with torch.no_grad():
        robust = {name: float((model(a).argmax(1) == y).float().mean()) for name, a in adv.items()}  # type: ignore[arg-type]
        robust["clean"] = float((model(x).argmax(1) == y).float().mean())
    result = {
        "pgd_over_bare_loop": round(med["pgd"] / med["bare_loop"], 3),
        "pgd_over_art": round(med["pgd_early_stop"] / med["art"], 3),
        "pgd_full_over_art": round(med["pgd"] / med["art"], 3),
        "robust_accuracy": {k: round(v, 4) for k, v in robust.items()},
        "pgd_s": round(med["pgd"], 4),
        "pgd_early_stop_s": round(med["pgd_early_stop"], 4),
        "bare_loop_s": round(med["bare_loop"], 4),
        "art_s": round(med["art"], 4),
        "max_abs_diff_pgd_vs_bare_loop": check,
        "settings": {
            "model": "small_cnn",
            "data": data,
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
