"""Training-step and ANP-iteration time of the demo model at 1 vs 2 torch threads, interleaved in one run.

    python benchmarks/threads.py --json --repeats 20

Each repeat runs every (threads, kind) candidate once in alternating order; medians are compared.
The ratio `two_over_one` < 1 means two threads are faster on this machine right now.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from benchmarks.anp_speed import anp_step_fn, train_step_fn
from pruneguard.models import create_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--arch", default="gap_cnn")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    model = create_model(args.arch, num_classes=10, input_shape=(1, 28, 28), mean=(0.286,), std=(0.353,))
    x, y = torch.rand(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))
    fns = {"train": train_step_fn(model, x, y), "anp": anp_step_fn(model, x, y)}
    cands = [(t, k) for t in (1, 2) for k in fns]
    times: dict[tuple[int, str], list[float]] = {c: [] for c in cands}
    for r in range(args.repeats + 1):
        for t, k in cands if r % 2 == 0 else list(reversed(cands)):
            torch.set_num_threads(t)
            t0 = time.perf_counter()
            fns[k]()
            if r:  # the first round is a warm-up
                times[(t, k)].append(time.perf_counter() - t0)
    med = {f"{k}_{t}thread_s": statistics.median(v) for (t, k), v in times.items()}
    out = {
        **med,
        "train_two_over_one": med["train_2thread_s"] / med["train_1thread_s"],
        "anp_two_over_one": med["anp_2thread_s"] / med["anp_1thread_s"],
        "arch": args.arch,
        "repeats": args.repeats,
        "cpus": torch.get_num_threads(),
    }
    print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
