"""One ANP iteration vs one plain training step of the same model and batch, measured side by side.

    python benchmarks/anp_speed.py --json             # PreAct-ResNet-18 (3x32x32, batch 128) and the demo model
    python benchmarks/anp_speed.py --repeats 5 --threads 1

Candidates alternate within each repeat and the medians are compared, so machine load affects both alike.
`anp_iter_over_train_step` is the PreAct-ResNet-18 ratio (the ANP reference code measured 2.7-3.2 here);
`anp_fast_iter_over_train_step` is the same for ``ANPConfig(fast=True)`` (the recipe field ``anp.fast``: 2 passes,
not 3). The ANP iteration runs as ``anp_optimize`` runs it (``fast_layout``: channels_last on the CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pruneguard.models import create_model
from pruneguard.pruning import (
    ANPConfig,
    NeuronReparam,
    fast_iteration,
    find_neuron_groups,
    mask_step,
    perturbation_step,
)
from pruneguard.utils.allocator import tune_allocator
from pruneguard.utils.modes import anp_mode, fast_layout


def train_step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def anp_step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, fast: bool = False) -> Callable[[], None]:
    cfg = ANPConfig(fast=fast)
    reparam = NeuronReparam(model, find_neuron_groups(model, x[:2]))
    mask = torch.ones(reparam.total, requires_grad=True)
    opt = torch.optim.SGD([mask], lr=cfg.lr, momentum=cfg.momentum)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        with anp_mode(model), fast_layout(model):  # as anp_optimize runs it
            if cfg.fast:
                fast_iteration(reparam, x, y, mask, opt, cfg, gen)
            else:
                noise = perturbation_step(reparam, x, y, mask, cfg, gen)
                mask_step(reparam, x, y, mask, opt, noise, cfg.alpha)

    return step


def measure(arch: str, shape: tuple[int, ...], batch: int, repeats: int, width: float = 1.0) -> dict[str, float]:
    torch.manual_seed(0)
    kwargs = {"width": width}
    model = create_model(
        arch, num_classes=10, input_shape=shape, mean=(0.5,) * shape[0], std=(0.25,) * shape[0], **kwargs
    )
    x, y = torch.rand(batch, *shape), torch.randint(0, 10, (batch,))
    fns = {
        "train_step": train_step_fn(model, x, y),
        "anp_iter": anp_step_fn(model, x, y),
        "anp_fast_iter": anp_step_fn(model, x, y, fast=True),
    }
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "train_step_s": med["train_step"],
        "anp_iter_s": med["anp_iter"],
        "anp_fast_iter_s": med["anp_fast_iter"],
        "ratio": med["anp_iter"] / med["train_step"],
        "fast_ratio": med["anp_fast_iter"] / med["train_step"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    malloc_tuned = tune_allocator()  # ${PRUNEGUARD_MALLOC}: tuned (default) or default
    resnet = measure("preact_resnet18", (3, 32, 32), args.batch, args.repeats)
    demo = measure("small_cnn", (1, 28, 28), args.batch, max(args.repeats, 10))
    out = {
        "anp_iter_over_train_step": resnet["ratio"],
        "anp_fast_iter_over_train_step": resnet["fast_ratio"],
        "preact_resnet18": resnet,
        "demo_small_cnn": demo,
        "batch": args.batch,
        "threads": args.threads,
        "repeats": args.repeats,
        "device": "cpu",
        "torch": torch.__version__,
        "malloc_tuned": malloc_tuned,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"PreAct-ResNet-18: ANP iteration {resnet['anp_iter_s']:.2f} s, train step {resnet['train_step_s']:.2f} s"
            f" -> ratio {resnet['ratio']:.2f}; --anp-fast {resnet['fast_ratio']:.2f}"
        )
        print(
            f"demo small_cnn:   ANP iteration {demo['anp_iter_s'] * 1e3:.1f} ms, train step "
            f"{demo['train_step_s'] * 1e3:.1f} ms -> ratio {demo['ratio']:.2f}; --anp-fast {demo['fast_ratio']:.2f}"
        )


if __name__ == "__main__":
    main()
