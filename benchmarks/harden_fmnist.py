"""Pruning as a robustness defence on Fashion-MNIST, measured honestly: one table for BENCHMARKS.md.

Variants of one ``small_cnn``: dense, global magnitude 30/50/70/90% and structured (channel) 50%, each without
and with adversarial fine-tuning (PGD-AT, the same epochs for every ``+AT`` row, masks kept), and static int8
of the dense and the 50% model. Magnitude and structured models are pruned step by step (``--step``) with a
clean fine-tuning epoch budget per step. Columns: clean accuracy, FGSM, PGD-20, AutoAttack (standard, on the
first ``--n-aa`` test images), Square (``--square-queries``), PGD transferred from the dense model, latency
(median ms per batch of up to 256 test images, CPU). int8 rows are attacked through BPDA (float gradients)
and by transfer, never with their own gradients. A row's flags are the gradient-masking checks it failed. The
closing statement is derived from the numbers. No collapse stop here: every sparsity is measured.

Usage:
    python benchmarks/harden_fmnist.py --out harden_fmnist.md           # full protocol (hours on a CPU)
    python benchmarks/harden_fmnist.py --quick --json                   # a few minutes: checks that it runs

Finished rows are cached under ``--cache`` (default ``runs/harden_fmnist_cache/<settings hash>``): run the same
command again after an interruption and only the missing rows are computed (the models they need are rebuilt,
seeded: a process computing `dense +AT` alone trains the dense model only).
``--only LABEL,LABEL`` computes just those rows, so several processes can share the work (and the cache); a
run without it then assembles the table from the cache (the models are built only when a row must be computed).

    python benchmarks/harden_fmnist.py --only "dense +AT,magnitude 50% +AT" &     # one core
    python benchmarks/harden_fmnist.py --only "magnitude 30% +AT,structured 50% +AT" &   # the other
    python benchmarks/harden_fmnist.py --out harden_fmnist.md                      # the rest, then the table
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anp_table  # noqa: E402

from pruneguard.attacks.evasion import BPDAWrapper, autoattack
from pruneguard.data import holdout_split, load_dataset
from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.defenses.adversarial_training import adversarial_finetune
from pruneguard.evaluation.robustness import (
    RobustnessSpec,
    correct_mask,
    evaluate_robustness,
    latency_ms,
    parameter_counts,
    score_adversarial,
)
from pruneguard.models import create_model
from pruneguard.models.fit import TrainConfig
from pruneguard.pruning import (
    MagnitudePruner,
    PruningPlan,
    apply_plan_,
    make_permanent_,
    prune_finetune,
    sparsity,
    step_schedule,
)
from pruneguard.pruning.base import effective_weight, prunable_modules
from pruneguard.pruning.structured import channel_widths
from pruneguard.pruning.structured_iterative import channel_sparsity, prune_finetune_structured
from pruneguard.quantization import quantize
from pruneguard.sweeps import SweepStats, Unit
from pruneguard.training.train import train_model
from pruneguard.utils.allocator import tune_allocator
from pruneguard.utils.io import atomic_write, atomic_write_text
from pruneguard.utils.seed import make_generator, seed_everything
from pruneguard.workflows.attack import eval_sample

MAGNITUDES = (0.3, 0.5, 0.7, 0.9)
_BASES = ("dense", *(f"magnitude {s:.0%}" for s in MAGNITUDES), "structured 50%")
INT8 = ("dense", "magnitude 50%")
# Every row of the table, in order.
LABELS = (*(lb for b in _BASES for lb in (b, f"{b} +AT")), *(f"{b} int8" for b in INT8))
QUICK = {
    "train_samples": 2000,
    "epochs": 1,
    "finetune_samples": 1000,
    "at_samples": 300,
    "at_epochs": 1,
    "n_eval": 48,
    "n_aa": 12,
    "square_queries": 50,
    "step": 0.3,
    "pgd_steps": 20,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--eps", type=float, default=0.1, help="L-inf budget in [0, 1] pixel units")
    p.add_argument("--epochs", type=int, default=8, help="training epochs of the dense model")
    p.add_argument("--train-samples", type=int, default=None, help="cap on training images (default: all)")
    p.add_argument("--finetune-epochs", type=int, default=1, help="clean fine-tuning epochs per prune step")
    p.add_argument("--finetune-samples", type=int, default=None, help="cap on fine-tuning images")
    p.add_argument("--step", type=float, default=0.1, help="sparsity added per prune / fine-tune step")
    p.add_argument("--at-epochs", type=int, default=2, help="PGD-AT fine-tuning epochs of the +AT rows")
    p.add_argument("--at-samples", type=int, default=20000, help="images used for PGD-AT fine-tuning")
    p.add_argument("--at-steps", type=int, default=7, help="PGD steps inside adversarial training")
    p.add_argument("--n-eval", type=int, default=1000, help="test images for clean/FGSM/PGD/Square/transfer")
    p.add_argument("--n-aa", type=int, default=1000, help="test images for AutoAttack (standard)")
    p.add_argument("--pgd-steps", type=int, default=20)
    p.add_argument("--square-queries", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny settings: checks the script runs")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--out", default=None, help="write the markdown table section to this file (atomically)")
    p.add_argument(
        "--only",
        default=None,
        # argparse %-formats help strings: the labels' "%" must be doubled
        help="comma-separated row labels to compute (others are skipped unless cached); labels: "
        + ", ".join(LABELS).replace("%", "%%"),
    )
    p.add_argument(
        "--cache",
        default="runs/harden_fmnist_cache",
        help="finished rows are kept here, keyed on the settings, so an interrupted run resumes ('' = off)",
    )
    anp_table.add_executor_options(p, device=False)
    args = p.parse_args(argv)
    anp_table.check_executor_options(p, args)
    if args.only is not None:
        only = [o.strip() for o in args.only.split(",") if o.strip()]
        unknown = [o for o in only if o not in LABELS]
        if unknown or not only:
            p.error(f"--only: {args.only!r} names no row or unknown rows {unknown}; accepted: {', '.join(LABELS)}")
        args.only = only
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    return args


class _RowCache:
    """Finished rows (and the dense model's PGD examples, for the transfer column) under ``root/<settings key>``.

    The key hashes every setting that changes a number, so rows of other settings are never mixed in."""

    _IGNORED = ("json", "out", "threads", "cache", "data_dir", "only", "executor", "ray_address")

    def __init__(self, root: str, args: argparse.Namespace) -> None:
        settings = {k: v for k, v in sorted(vars(args).items()) if k not in self._IGNORED}
        settings["torch"] = torch.__version__
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = Path(root) / key if root else None

    def _path(self, label: str, suffix: str) -> Path | None:
        slug = "".join(c if c.isalnum() else "_" for c in label)
        return None if self.dir is None else self.dir / f"{slug}{suffix}"

    def row_path(self, label: str) -> Path | None:
        return self._path(label, ".json")

    def row(self, label: str) -> dict[str, Any] | None:
        path = self._path(label, ".json")
        return json.loads(path.read_text()) if path is not None and path.is_file() else None

    def save_row(self, label: str, row: dict[str, Any]) -> None:
        path = self._path(label, ".json")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(row))

    def transfer(self) -> Tensor | None:
        path = self._path("dense", "_pgd.pt")
        return torch.load(path, weights_only=True) if path is not None and path.is_file() else None

    def save_transfer(self, x_adv: Tensor) -> None:
        path = self._path("dense", "_pgd.pt")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path, "wb") as fh:
                torch.save(x_adv, fh)


def _cap(data: ArrayData, n: int | None, seed: int) -> ArrayData:
    return data if n is None else eval_sample(data, n, seed)


def _prepare(args: argparse.Namespace) -> tuple[nn.Module, ArrayData, ArrayData, ArrayData]:
    """Train the dense model on the training split minus a 10% held-out part (the defender's split)."""
    train = _cap(load_dataset("fashion_mnist", "train", args.data_dir), args.train_samples, args.seed)
    test = load_dataset("fashion_mnist", "test", args.data_dir)
    fit_idx, held = holdout_split(train.y, 0.1, generator=torch.Generator().manual_seed(args.seed))
    fit, clean = train.subset(fit_idx), train.subset(held)
    torch.manual_seed(args.seed)
    dense = create_model("small_cnn", num_classes=10, input_shape=(1, 28, 28), mean=(0.2860,), std=(0.3530,))
    train_model(dense, fit, TrainConfig(epochs=args.epochs, seed=args.seed, crop_padding=2, hflip=False))
    return dense.eval(), fit, clean, test


def _variants(
    args: argparse.Namespace, dense: nn.Module, fit: ArrayData, x_sel: Tensor, y_sel: Tensor, needed: set[str]
) -> dict[str, tuple[nn.Module, float]]:
    """name -> (float model, sparsity) for the ``needed`` names (and dense); every pruned model is fine-tuned after
    each step. Each starts from a copy of ``dense`` with seeded fine-tuning, so building fewer changes none."""
    tune = _cap(fit, args.finetune_samples, args.seed)
    tcfg = TrainConfig(epochs=args.finetune_epochs, lr=0.01, seed=args.seed, crop_padding=1, hflip=False)

    def finetune(m: nn.Module) -> None:
        train_model(m, tune, tcfg)

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"clean_accuracy": float(correct_mask(m, x_sel, y_sel).float().mean())}

    out: dict[str, tuple[nn.Module, float]] = {"dense": (dense, 0.0)}
    for s in MAGNITUDES:
        if f"magnitude {s:.0%}" not in needed:
            continue
        model = copy.deepcopy(dense)
        schedule = step_schedule(s, min(args.step, s))
        prune_finetune(model, lambda t: MagnitudePruner(sparsity=t), schedule, finetune, evaluate)
        make_permanent_(model)
        out[f"magnitude {s:.0%}"] = (model.eval(), sparsity(model))
    if "structured 50%" not in needed:
        return out
    schedule = step_schedule(0.5, min(args.step, 0.5))
    small, _, _ = prune_finetune_structured(dense, schedule, to_float(fit.x[:2]), finetune, evaluate)
    out["structured 50%"] = (small.eval(), channel_sparsity(channel_widths(dense), small))
    return out


def _adversarial(args: argparse.Namespace, model: nn.Module, fit: ArrayData) -> nn.Module:
    """A copy fine-tuned with PGD-AT; its zero weights (pruned) are held at zero by pruning masks meanwhile."""
    tuned = copy.deepcopy(model)
    masks = {f"{n}.weight": effective_weight(m) != 0 for n, m in prunable_modules(tuned).items()}
    apply_plan_(tuned, PruningPlan("magnitude", "weight", 0.0, masks=masks))
    adversarial_finetune(
        tuned,
        _cap(fit, args.at_samples, args.seed + 1),
        epochs=args.at_epochs,
        eps=args.eps,
        step_size=2.5 * args.eps / args.at_steps,
        steps=args.at_steps,
        lr=0.01,
        batch_size=128,
        generator=make_generator(args.seed),
    )
    make_permanent_(tuned)
    return tuned.eval()


def _row(
    name: str,
    scored: nn.Module,
    x: Tensor,
    y: Tensor,
    spec: RobustnessSpec,
    args: argparse.Namespace,
    *,
    transfer: Tensor | None,
    sparse: float,
    latency_model: nn.Module | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One table row: the evaluation protocol on ``scored`` (a float model, or BPDA(int8, float))."""
    bpda = isinstance(scored, BPDAWrapper)
    ev, advs = evaluate_robustness(scored, x, y, spec, sensitivity=not bpda)
    n = min(args.n_aa, len(y))
    x_aa = autoattack(scored, x[:n], y[:n], eps=args.eps, version="standard", generator=make_generator(args.seed))
    att = ev["attacks"]
    row = {
        "variant": name,
        "sparsity": sparse,
        "params": None if bpda else parameter_counts(scored)["nonzero"],
        "clean": ev["clean_accuracy"],
        "fgsm": att["fgsm"]["robust_accuracy"],
        "pgd": att["pgd"]["robust_accuracy"],
        "autoattack": score_adversarial(scored, x[:n], y[:n], x_aa, name="autoattack").robust_accuracy,
        "square": att.get("square", {}).get("robust_accuracy"),
        "transfer_from_dense": None
        if transfer is None
        else score_adversarial(scored, x, y, transfer, name="transfer").robust_accuracy,
        "latency_ms": latency_ms(latency_model or scored, x[:256]),
        "flags": sorted({f["check"] for f in ev["flags"]}),
    }
    return row, advs


def _statement(rows: list[dict[str, Any]], n_aa: int) -> str:
    """Did pruning help robustness? Each pruned float row against the dense row with the same training."""
    noise = max(0.01, 2.0 / max(1, n_aa))
    by = {r["variant"]: r for r in rows}
    parts, helped_any = [], False
    for at, base in ((False, "dense"), (True, "dense +AT")):
        pruned = [
            r
            for r in rows
            if r["variant"].startswith(("magnitude", "structured"))
            and "int8" not in r["variant"]
            and r["variant"].endswith("+AT") == at
        ]
        if base not in by or not pruned:
            continue
        ref = by[base]["autoattack"]
        best = max(pruned, key=lambda r: r["autoattack"])
        helped = [r["variant"] for r in pruned if r["autoattack"] > ref + noise and not r["flags"]]
        helped_any |= bool(helped)
        label = "with adversarial fine-tuning" if at else "without adversarial training"
        gain = f"best {best['variant']}: {best['autoattack'] - ref:+.3f} over {base}"
        if helped:
            parts.append(f"{label}, {', '.join(helped)} beat {base} under AutoAttack beyond the noise level ({gain})")
        else:
            parts.append(f"{label}, no pruned model beat {base} under AutoAttack beyond the noise level ({gain})")
    if not parts:
        return "No pruned row next to its dense baseline yet: nothing to compare."
    verdict = "Pruning helped robustness here" if helped_any else "Pruning did not help robustness here"
    masked = [r["variant"] for r in rows if r["flags"]]
    tail = f" Rows with gradient-masking flags (not trustworthy): {', '.join(masked)}." if masked else ""
    return f"{verdict} (noise level {noise:.3f}): " + "; ".join(parts) + "." + tail


def _markdown(rows: list[dict[str, Any]], args: argparse.Namespace, argv: list[str]) -> str:
    f = lambda v: "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    cols = ["clean", "fgsm", "pgd", "autoattack", "square", "transfer_from_dense"]
    head = ["variant", "sparsity", "non-zero params", "clean", "FGSM", "PGD-20", "AutoAttack", "Square"]
    head += ["transfer from dense", "latency (ms)", "flags"]
    row_min = sum(r.get("seconds", 0.0) for r in rows) / 60
    prep_min = max((r.get("prep_seconds", 0.0) for r in rows), default=0.0) / 60
    mode = "QUICK mode: tiny settings, the numbers are not meaningful" if args.quick else "full protocol"
    lines = [
        f"## Pruning as a robustness defence: Fashion-MNIST, small_cnn, L-inf eps={args.eps:g}",
        "",
        f"Command: `python benchmarks/harden_fmnist.py {' '.join(argv)}` ({mode}); {_dt.date.today().isoformat()}, "
        f"torch {torch.__version__}, {args.threads} CPU thread(s), {row_min:.1f} min of evaluation in all (sum of the "
        f"rows; training and pruning the models takes {prep_min:.1f} min more per process). Clean, FGSM, PGD, Square "
        f"and transfer on {args.n_eval} test images, AutoAttack (standard) on the first {args.n_aa}; robust accuracy "
        "= correct clean and under attack. int8 rows: FGSM, PGD and AutoAttack through BPDA (float gradients). "
        f"Latency: median ms per batch of {min(256, args.n_eval)} test images.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [r["variant"], f(r["sparsity"]), f(r["params"]), *(f(r[k]) for k in cols)]
        cells += [f"{r['latency_ms']:.2f}", ", ".join(r["flags"]) or "–"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"**Did pruning help robustness here?** {_statement(rows, min(args.n_aa, args.n_eval))}", ""]
    return "\n".join(lines)


def _base(label: str) -> str:
    """The variant a row label is built from: ``magnitude 50% +AT`` and ``magnitude 50% int8`` -> ``magnitude 50%``."""
    return label.removesuffix(" +AT").removesuffix(" int8")


def _compute_rows(args: argparse.Namespace, cache: _RowCache, labels: list[str]) -> dict[str, dict[str, Any]]:
    """Build the models and compute the rows ``labels`` (none of them cached); each is cached as it finishes."""
    t_prep = time.perf_counter()
    dense, fit, clean, test = _prepare(args)
    sample = eval_sample(test, args.n_eval, args.seed)
    x, y = to_float(sample.x), sample.y
    spec = RobustnessSpec(
        eps=args.eps, steps=args.pgd_steps, square_queries=args.square_queries, sweep=(0.5,), seed=args.seed
    )
    needed = {_base(lb) for lb in labels}
    variants = _variants(args, dense, fit, to_float(clean.x[:512]), clean.y[:512], needed)
    prep_seconds = time.perf_counter() - t_prep
    out: dict[str, dict[str, Any]] = {}

    def done(label: str, row: dict[str, Any]) -> None:
        row["prep_seconds"] = prep_seconds
        cache.save_row(label, row)
        out[label] = row
        got = [row[k] for k in ("clean", "pgd", "autoattack")]
        print(f"{label}: clean/PGD/AA {got}", file=sys.stderr)

    transfer = cache.transfer()
    if transfer is None:  # the dense row also yields the PGD examples scored on every other model
        t_row = time.perf_counter()
        dense_row, advs = _row("dense", dense, x, y, spec, args, transfer=None, sparse=0.0)
        dense_row["seconds"] = time.perf_counter() - t_row
        transfer = advs["pgd"]
        cache.save_transfer(transfer)
        if cache.row("dense") is None:
            done("dense", dense_row)
    for label in labels:
        if label in out:
            continue
        t_row = time.perf_counter()
        model, sparse = variants[_base(label)]
        if label.endswith(" int8"):
            qmodel = quantize(model, "static_int8", calibration=clean)
            row = _row(label, BPDAWrapper(qmodel, model), x, y, spec, args, transfer=transfer, sparse=sparse,
                       latency_model=qmodel)[0]  # fmt: skip
        elif label.endswith(" +AT"):
            row = _row(label, _adversarial(args, model, fit), x, y, spec, args, transfer=transfer, sparse=sparse)[0]
        else:
            row = _row(label, model, x, y, spec, args, transfer=None if label == "dense" else transfer,
                       sparse=sparse)[0]  # fmt: skip
        row["seconds"] = time.perf_counter() - t_row
        done(label, row)
    return out


def label_row(args: argparse.Namespace, label: str) -> dict[str, Any]:
    """One row as a unit of the sweep: builds the models it needs (the dense row also keeps the transfer set)."""
    return _compute_rows(args, _RowCache(args.cache, args), [label])[label]


def sweep_rows(args: argparse.Namespace, cache: _RowCache, labels: list[str]) -> dict[str, dict[str, Any]]:
    """The rows ``labels`` (none of them cached) as units on --executor: the dense row first when it is wanted
    (its PGD examples are scored on every other model), then the others side by side."""
    out: dict[str, dict[str, Any]] = {}
    for group in ([lb for lb in labels if lb == "dense"], [lb for lb in labels if lb != "dense"]):
        units = [
            Unit(lb, {"label": lb}, label_row, (args, lb), path=cache.row_path(lb), num_cpus=args.threads)
            for lb in group
        ]
        out.update(zip(group, anp_table.sweep(units, args, SweepStats()), strict=True))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()  # ${PRUNEGUARD_MALLOC}: tuned (default) or default
    seed_everything(args.seed)
    t0 = time.perf_counter()
    cache = _RowCache(args.cache, args)
    cached = {lb: r for lb in LABELS if (r := cache.row(lb)) is not None}
    for lb in cached:
        print(f"{lb}: cached", file=sys.stderr)
    wanted = [lb for lb in (args.only or LABELS) if lb not in cached]
    computed = sweep_rows(args, cache, wanted)
    rows = [r for lb in LABELS if (r := computed.get(lb, cached.get(lb))) is not None]
    missing = [lb for lb in LABELS if lb not in computed and lb not in cached]
    seconds = time.perf_counter() - t0
    md = _markdown(rows, args, argv)
    statement = _statement(rows, min(args.n_aa, args.n_eval))
    if missing:
        print(f"rows not computed yet (run without --only to finish): {', '.join(missing)}", file=sys.stderr)
    elif args.out:
        atomic_write_text(args.out, md)
    print(json.dumps({"rows": rows, "statement": statement, "seconds": seconds}) if args.json else md)
    return {"rows": rows, "statement": statement, "markdown": md, "missing": missing}


if __name__ == "__main__":
    main()
