"""CPU inference latency: dense vs 50%-channel-pruned, and fp32 vs static int8, for one zoo model.

Timing: ``torch.no_grad`` inference on a fixed random batch, warm-up runs first, then ``--repeats`` rounds in
which every variant runs once (interleaved, the order rotating each round so drift and noisy neighbours hit all
variants alike); the median per variant is reported. Weights are random (latency does not depend on them);
int8 calibration uses random inputs.

Example:
    python benchmarks/structured_speed.py --json --threads 1 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData
from pruneguard.models import create_model
from pruneguard.pruning import remove_channels
from pruneguard.quantization import default_backend, quantize
from pruneguard.utils.allocator import tune_allocator

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18_cifar", help="zoo model (default: resnet18_cifar)")
    p.add_argument("--width", type=float, default=0.5, help="channel multiplier of the dense model")
    p.add_argument("--input-shape", type=int, nargs=3, default=(3, 32, 32), metavar=("C", "H", "W"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sparsity", type=float, default=0.5, help="fraction of channels removed per layer")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--repeats", type=int, default=20, help="timed rounds (each runs every variant once)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per variant first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p.parse_args(argv)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _time_interleaved(variants: dict[str, Callable[[], Tensor]], repeats: int, warmup: int) -> dict[str, float]:
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            variants[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
    return {n: statistics.median(ts) * 1000.0 for n, ts in times.items()}


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()  # ${PRUNEGUARD_MALLOC}: tuned (default) or default
    torch.manual_seed(args.seed)
    shape = tuple(args.input_shape)
    mean, std = (CIFAR_MEAN, CIFAR_STD) if shape[0] == 3 else ((0.5,), (0.25,))
    dense = create_model(args.arch, num_classes=10, input_shape=shape, mean=mean, std=std, width=args.width).eval()
    g = torch.Generator().manual_seed(args.seed)
    x = torch.rand(args.batch_size, *shape, generator=g)
    calib = ArrayData(torch.rand(256, *shape, generator=g), torch.zeros(256, dtype=torch.long), 10)
    t0 = time.perf_counter()
    pruned = remove_channels(dense, args.sparsity, x[:2]).eval()
    prune_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dense_int8 = quantize(dense, "static_int8", calibration=calib)
    pruned_int8 = quantize(pruned, "static_int8", calibration=calib)
    quant_s = time.perf_counter() - t0
    models = {"dense_fp32": dense, "pruned_fp32": pruned, "dense_int8": dense_int8, "pruned_int8": pruned_int8}
    with torch.no_grad():
        assert all(m(x).shape == (args.batch_size, 10) for m in models.values())
        ms = _time_interleaved({n: (lambda m=m: m(x)) for n, m in models.items()}, args.repeats, args.warmup)
    result: dict[str, object] = {
        "arch": args.arch,
        "width": args.width,
        "input_shape": list(shape),
        "batch_size": args.batch_size,
        "sparsity": args.sparsity,
        "threads": args.threads,
        "repeats": args.repeats,
        "backend": default_backend(),
        "params": {"dense": _params(dense), "pruned": _params(pruned)},
        "median_ms": {k: round(v, 3) for k, v in ms.items()},
        "speedup": round(ms["dense_fp32"] / ms["pruned_fp32"], 3),
        "int8_speedup": round(ms["dense_fp32"] / ms["dense_int8"], 3),
        "pruned_int8_speedup": round(ms["dense_fp32"] / ms["pruned_int8"], 3),
        "setup_seconds": {"remove_channels": round(prune_s, 2), "quantize_both": round(quant_s, 2)},
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in ms.items():
            print(f"{k:>12}: {v:9.2f} ms")
        print(f"speedup (dense/pruned) {result['speedup']}x, int8 speedup (fp32/int8) {result['int8_speedup']}x")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
