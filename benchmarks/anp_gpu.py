"""The ANP paper's setting on one device: PreAct-ResNet-18 on 3x32x32 inputs, ANP at batch 128, timed end to end,
with the plain training step of the same model and batch beside it.

    python benchmarks/anp_gpu.py --json                        # 2000 ANP iterations on --device auto
    python benchmarks/anp_gpu.py --json --amp                  # the same under bf16 autocast (measured, not default)
    python benchmarks/anp_gpu.py --json --device cpu --iterations 3 --train-steps 3   # a smoke run

The clean set is seeded synthetic uint8 images (``--samples``, 10 classes): only the time matters here, and a
real set would add nothing to it. ANP runs through :func:`pruneguard.pruning.anp_optimize` exactly as ``purify``
does (the paper's config: eps 0.4, one ascent step, crop/flip augmentation), data moving from the host per batch.
``anp_iter_over_train_step`` is (ANP seconds / iterations) / (median training-step seconds); both include the
per-step host-to-device copy of the batch. Times on CUDA are taken after ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pruneguard.data.augment import augment_batch
from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.errors import ConfigError
from pruneguard.models import create_model
from pruneguard.pruning import ANPConfig, anp_optimize
from pruneguard.utils.device import resolve_device

SHAPE = (3, 32, 32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _autocast(device: torch.device, amp: bool) -> Iterator[None]:
    """bf16 autocast on ``device`` with ``amp``, else nothing."""
    if not amp:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


def synthetic_set(n: int, seed: int) -> ArrayData:
    """``n`` seeded uint8 images ``(n, 3, 32, 32)`` with balanced labels over 10 classes."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *SHAPE), generator=gen, dtype=torch.uint8)
    y = torch.arange(n) % 10
    return ArrayData(x, y, 10)


def build_model(device: torch.device, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("preact_resnet18", num_classes=10, input_shape=SHAPE, mean=(0.5,) * 3, std=(0.25,) * 3)
    return model.to(device)


def train_step_seconds(
    model: nn.Module, data: ArrayData, batch: int, steps: int, amp: bool, seed: int
) -> tuple[float, float]:
    """(median, mean) seconds of a plain SGD step on a batch drawn and augmented as ANP draws its batches."""
    device = next(model.parameters()).device
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    times = []
    for i in range(steps + 2):  # two warm-up steps
        _sync(device)
        t0 = time.perf_counter()
        idx = torch.randint(len(data), (batch,), generator=gen)
        x, y = to_float(data.x[idx]).to(device), data.y[idx].to(device)
        x = augment_batch(x, padding=4, hflip=True, generator=gen)
        opt.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        float(loss.detach())  # ANP reads its loss every iteration too
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), statistics.mean(times)


def anp_seconds(model: nn.Module, data: ArrayData, cfg: ANPConfig, amp: bool) -> float:
    device = next(model.parameters()).device
    _sync(device)
    t0 = time.perf_counter()
    with _autocast(device, amp):
        anp_optimize(model, data, cfg)
    _sync(device)
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    device = resolve_device(args.device, param="--device")
    torch.set_num_threads(args.threads)
    data = synthetic_set(args.samples, args.seed)
    model = build_model(device, args.seed)
    cfg = ANPConfig(iterations=args.iterations, batch_size=args.batch, seed=args.seed, checkpoint_every=10**9)
    anp_seconds(model, data, ANPConfig(iterations=3, batch_size=args.batch, seed=args.seed), args.amp)  # warm-up
    setup = time.perf_counter() - t_start
    anp = anp_seconds(model, data, cfg, args.amp)
    step_median, step_mean = train_step_seconds(
        build_model(device, args.seed), data, args.batch, args.train_steps, args.amp, args.seed
    )
    iteration = anp / args.iterations
    return {
        "anp_seconds": anp,
        "anp_iter_s": iteration,
        "train_step_s": step_median,
        "train_step_mean_s": step_mean,
        "anp_iter_over_train_step": iteration / step_median,
        "iterations": args.iterations,
        "train_steps": args.train_steps,
        "batch": args.batch,
        "samples": args.samples,
        "amp": "bf16" if args.amp else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "threads": args.threads,
        "setup_seconds": setup,
        "total_seconds": time.perf_counter() - t_start,
        "torch": torch.__version__,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--iterations", type=int, default=2000, help="ANP iterations (the paper's 2000)")
    p.add_argument("--train-steps", type=int, default=200, help="training steps timed (after two warm-up steps)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--samples", type=int, default=500, help="size of the synthetic clean set (the paper: 1% = 500)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for ANP and the training step")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    for name in ("iterations", "train_steps", "batch", "samples", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)} is not accepted; accepted: an integer >= 1")
    try:
        out = run(args)
    except ConfigError as exc:
        p.error(str(exc))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{out['device_name']}: {out['iterations']} ANP iterations in {out['anp_seconds']:.1f} s "
            f"({out['anp_iter_s'] * 1e3:.1f} ms each), training step {out['train_step_s'] * 1e3:.1f} ms "
            f"-> ratio {out['anp_iter_over_train_step']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
