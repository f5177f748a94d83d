"""The CPU memory layout, side by side: each library loop on the zoo's networks in PyTorch's default (NCHW) layout
and in channels_last (what :func:`pruneguard.utils.modes.fast_layout` switches to), interleaved in one run.

    python benchmarks/layout.py --repeats 5 --out-json benchmarks/results/layout.json
    python benchmarks/layout.py --purify runs/anp_table/badnets-s0-*/model.safetensors --eval-attack badnets \
        --out-json benchmarks/results/layout_purify.json       # one purify run of the default recipe per layout
    # or side by side under the same load: one process per layout (--layouts default / --layouts channels_last)

Per architecture (Fashion-MNIST shapes, random weights and images, one torch thread) and per loop, each repeat runs
the two layouts in alternating order; medians are compared (``speedup`` = default / channels_last seconds).
The loops are the library's own: ``reverse_trigger`` (the scan and the repair), ``anp_optimize`` and
``predict_logits``, which switch layout themselves, and an epoch of ``fit_`` (training, fine-tuning) run inside
``fast_layout`` here: training is left in the default layout because this row shows no gain. ``max_logit_diff``
is the largest difference between the two layouts' logits on the same weights (the layout changes strides, never
values). ``--purify MODEL`` instead runs ``purify`` (the default recipe, 1% clean data) once in each layout, one
after the other: seconds per step, the verdict, accuracy and ASR after, and whether the two purified models agree.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pruneguard.config import PurifyConfig
from pruneguard.data.tensors import ArrayData
from pruneguard.evaluation.predict import predict_logits
from pruneguard.models import create_model
from pruneguard.models.fit import TrainConfig, fit_
from pruneguard.pruning.anp import ANPConfig, anp_optimize
from pruneguard.scan.reversal import ReversalConfig, reverse_trigger
from pruneguard.utils.io import atomic_write_json
from pruneguard.utils.modes import LAYOUT_ENV, LAYOUTS, fast_layout
from pruneguard.workflows.purify import purify, weights_sha256

ARCHS = {"small_cnn": 1.0, "gap_cnn": 1.0, "plain_cnn": 1.0, "vgg11_bn": 0.25, "preact_resnet18": 0.25, "gn_cnn": 1.0}


def loops(arch: str, width: float, n: int) -> tuple[torch.nn.Module, ArrayData, dict[str, Callable[[], Any]]]:
    """A fresh ``arch`` model, ``n`` random images and the four timed loops on them (each leaves the model as
    it found it, so every repeat times the same work)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model(arch, num_classes=10, input_shape=(1, 28, 28), mean=(0.286,), std=(0.353,), width=width)
    data = ArrayData(torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen), 10)
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def train() -> None:
        with fast_layout(model):
            fit_(model, data, TrainConfig(epochs=1, batch_size=128, lr=0.01, seed=0))
        model.load_state_dict(start)

    return (
        model,
        data,
        {
            "fit_epoch": train,
            "reverse_trigger": lambda: reverse_trigger(model, data, 0, ReversalConfig(steps=10)),
            "anp_optimize": lambda: anp_optimize(model, data, ANPConfig(iterations=10, batch_size=128)),
            "predict_logits": lambda: predict_logits(model, data),
        },
    )


def measure(arch: str, width: float, repeats: int, n: int) -> dict[str, Any]:
    model, data, fns = loops(arch, width, n)
    times: dict[tuple[str, str], list[float]] = {(lay, k): [] for lay in LAYOUTS for k in fns}
    for r in range(repeats + 1):
        for lay in LAYOUTS if r % 2 == 0 else tuple(reversed(LAYOUTS)):
            os.environ[LAYOUT_ENV] = lay
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                if r:  # the first round warms up
                    times[(lay, k)].append(time.perf_counter() - t0)
    logits = {}
    for lay in LAYOUTS:
        os.environ[LAYOUT_ENV] = lay
        logits[lay] = predict_logits(model, data)
    os.environ.pop(LAYOUT_ENV, None)
    med = {f"{k}_{lay}_s": statistics.median(v) for (lay, k), v in times.items()}
    return {
        "arch": arch,
        "width": width,
        **med,
        **{f"{k}_speedup": med[f"{k}_default_s"] / med[f"{k}_channels_last_s"] for k in fns},
        "max_logit_diff": float((logits["default"] - logits["channels_last"]).abs().max()),
    }


def purify_both(model: Path, eval_attack: str | None, out: Path, layouts: tuple[str, ...] = LAYOUTS) -> dict[str, Any]:
    """``purify`` with the default recipe on ``model`` in each of ``layouts`` (fresh output folders under
    ``out``)."""
    runs = {}
    for lay in layouts:
        os.environ[LAYOUT_ENV] = lay
        cfg = PurifyConfig(model=model, out=out / lay, eval_attack=eval_attack, device="cpu")
        report, purified, _ = purify(cfg)
        runs[lay] = {
            "seconds": report["seconds"],
            "steps": {k: report[k]["seconds"] for k in ("scan", "reversal_scan", "anp", "repair") if report.get(k)},
            "verdict": report["verdict"]["status"],
            "after": report["after"],
            "weights_sha256": weights_sha256(purified),
        }
        print(json.dumps({"layout": lay, **runs[lay]}), flush=True)
    os.environ.pop(LAYOUT_ENV, None)
    result: dict[str, Any] = {"model": str(model), "runs": runs}
    if len(runs) == len(LAYOUTS):
        result["speedup"] = runs["default"]["seconds"] / runs["channels_last"]["seconds"]
        result["same_weights"] = runs["default"]["weights_sha256"] == runs["channels_last"]["weights_sha256"]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default=",".join(ARCHS), help="comma-separated zoo architectures")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--images", type=int, default=1024, help="random images per loop")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--purify", type=Path, default=None, help="a model file: time purify in each layout instead")
    p.add_argument("--eval-attack", default=None, help="with --purify: the trigger whose ASR is measured")
    p.add_argument(
        "--layouts",
        default=",".join(LAYOUTS),
        help="with --purify: the layouts to run (one per process runs them side by side under the same load)",
    )
    p.add_argument("--work", type=Path, default=Path("runs/layout"), help="with --purify: output folders")
    p.add_argument("--out-json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    if args.purify is not None:
        if args.work.exists():
            raise SystemExit(f"--work={args.work} exists; accepted: a folder this run creates")
        layouts = tuple(args.layouts.split(","))
        if not set(layouts) <= set(LAYOUTS):
            raise SystemExit(f"--layouts={args.layouts}: accepted: {', '.join(LAYOUTS)}")
        result = {**purify_both(args.purify, args.eval_attack, args.work, layouts), "threads": args.threads}
        if args.out_json:
            atomic_write_json(args.out_json, result)
        return 0
    rows = []
    for arch in args.archs.split(","):
        rows.append(measure(arch, ARCHS.get(arch, 1.0), args.repeats, args.images))
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
    out = {"rows": rows, "repeats": args.repeats, "images": args.images, "threads": args.threads}
    if args.out_json:
        atomic_write_json(args.out_json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
