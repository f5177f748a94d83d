"""Calibrate the neuron-sensitivity scan on a zoo of clean and backdoored models that pruneguard trains itself.

    python benchmarks/scan_zoo.py --quick --json     # digits only, 3 clean + 3 backdoored (a smoke run, ~1 min)
    python benchmarks/scan_zoo.py --json             # digits + fashion_mnist, 12 clean + 12 backdoored

Each model is trained with ``train_job`` (small_cnn / gap_cnn; badnets / blend; several seeds and target
labels) and cached under ``runs/scan_zoo/<key>/`` where ``key`` hashes its training config, so a second run only
scans. Every model is then scanned with ``pruneguard.workflows.scan.scan`` (default ScanConfig) on its held-out
clean split. Prints JSON with ``auroc`` (clean vs backdoored by score), ``target_accuracy`` (share of
backdoored models whose suspected target is the true one), ``threshold`` (the cut that best separates them:
the midpoint of the widest gap among the cuts with the best balanced accuracy), ``rows`` (one per model) and
``variants`` (AUROC of alternative scores built from the same curves, for reference).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pruneguard.config import TrainRunConfig
from pruneguard.utils.allocator import tune_allocator
from pruneguard.workflows.scan import ScanRunConfig, scan
from pruneguard.workflows.train import MODEL_NAME, train_job

# dataset -> (epochs, width, poison_rate, clean_samples)
_DATA = {"digits": (20, 0.5, 0.1, 140), "fashion_mnist": (2, 0.5, 0.05, 500)}


def zoo(quick: bool) -> list[dict[str, Any]]:
    """The models to train: dicts of TrainRunConfig fields (without ``out``)."""
    specs: list[dict[str, Any]] = []
    archs = ("small_cnn", "gap_cnn")
    if quick:
        for seed in range(3):
            specs.append(
                {"dataset": "digits", "arch": archs[seed % 2], "attack": None, "target_label": 0, "seed": seed}
            )
        for i, (attack, target) in enumerate((("badnets", 0), ("blend", 4), ("badnets", 7))):
            specs.append(
                {"dataset": "digits", "arch": archs[i % 2], "attack": attack, "target_label": target, "seed": 10 + i}
            )
    else:
        for seed in range(8):
            specs.append(
                {"dataset": "digits", "arch": archs[seed % 2], "attack": None, "target_label": 0, "seed": seed}
            )
        for i, target in enumerate((0, 3, 5, 7, 9, 1, 4, 8)):
            attack = ("badnets", "blend")[(i // 2) % 2]
            specs.append(
                {"dataset": "digits", "arch": archs[i % 2], "attack": attack, "target_label": target, "seed": 10 + i}
            )
        for seed in range(4):
            specs.append(
                {"dataset": "fashion_mnist", "arch": archs[seed % 2], "attack": None, "target_label": 0, "seed": seed}
            )
        for i, target in enumerate((2, 6, 0, 9)):
            attack = ("badnets", "blend")[(i // 2) % 2]
            specs.append(
                {
                    "dataset": "fashion_mnist",
                    "arch": archs[i % 2],
                    "attack": attack,
                    "target_label": target,
                    "seed": 10 + i,
                }
            )
    for s in specs:
        epochs, width, rate, _ = _DATA[s["dataset"]]
        s.update(epochs=epochs, width=width, poison_rate=rate)
    return specs


def _key(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def train_cached(spec: dict[str, Any], cache: Path) -> tuple[Path, dict[str, Any], bool]:
    """Train ``spec`` unless ``cache/<key>/`` already holds it; return (model path, train result, trained now)."""
    out = cache / _key(spec)
    model, result = out / MODEL_NAME, out / "result.json"
    if model.is_file() and result.is_file():
        return model, json.loads(result.read_text()), False
    report, _ = train_job(TrainRunConfig(out=out, **spec))
    (out / "checkpoint.pt").unlink(missing_ok=True)
    result.write_text(json.dumps(report, indent=2, default=str))
    (out / "spec.json").write_text(json.dumps(spec, indent=2))
    return model, report, True


def auroc(neg: list[float], pos: list[float]) -> float:
    """P(score of a backdoored model > score of a clean one), ties counted half (Mann-Whitney)."""
    if not neg or not pos:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def best_threshold(neg: list[float], pos: list[float]) -> tuple[float, float]:
    """(threshold, balanced accuracy): the midpoint of the widest gap among the best cuts ``score > t``."""
    values = sorted(set(neg) | set(pos))
    cuts = [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] or values
    best: tuple[float, float, float] = (-1.0, -1.0, 0.0)  # (balanced accuracy, gap, threshold)
    for i, t in enumerate(cuts):
        tpr = sum(p > t for p in pos) / len(pos)
        tnr = sum(n <= t for n in neg) / len(neg)
        gap = values[i + 1] - values[i] if len(values) > 1 else 0.0
        best = max(best, ((tpr + tnr) / 2, gap, t))
    return best[2], best[0]


def _share(counts: list[int]) -> float:
    return max(counts) / (sum(counts) + len(counts))


def _variants(rows: list[dict[str, Any]]) -> dict[str, float]:
    """AUROC of alternative scores computed from the same per-eps curves (for reference, not used)."""
    out: dict[str, float] = {}
    n_eps = len(rows[0]["curve"])
    candidates = {
        "concentration (the score)": lambda c: _share([sum(r["errors_by_class"][k] for r in c) for k in range(10)]),
        "mean_flip": lambda c: sum(r["flip"] for r in c) / len(c),
        "max_flip": lambda c: max(r["flip"] for r in c),
        "mean_error_rate": lambda c: sum(r["error_rate"] for r in c) / len(c),
        "mean_top_share": lambda c: sum(r["top_share"] for r in c) / len(c),
    }
    for i in range(n_eps):
        candidates[f"flip@eps={rows[0]['curve'][i]['eps']}"] = lambda c, i=i: c[i]["flip"]
    for name, fn in candidates.items():
        neg = [fn(r["curve"]) for r in rows if r["attack"] is None]
        pos = [fn(r["curve"]) for r in rows if r["attack"] is not None]
        out[name] = auroc(neg, pos)
    return out


def run(quick: bool, cache: Path, log: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    train_s = scan_s = 0.0
    for spec in zoo(quick):
        t = time.perf_counter()
        model, trained, fresh = train_cached(spec, cache)
        train_s += time.perf_counter() - t
        t = time.perf_counter()
        clean_samples = _DATA[spec["dataset"]][3]
        report = scan(ScanRunConfig(model=model, out=cache / "_unused", clean_samples=clean_samples))
        scan_s += time.perf_counter() - t
        row = {
            "model": str(model),
            **{k: spec[k] for k in ("dataset", "arch", "attack", "target_label", "seed")},
            "trained_now": fresh,
            "test_accuracy": trained["test"]["accuracy"],
            "asr": trained["test"]["asr"],
            "score": report["score"],
            "verdict": report["verdict"],
            "suspected_target": report["suspected_target"],
            "target_share": report["target_share"],
            "curve": [
                {k: r[k] for k in ("eps", "error_rate", "top_share", "flip", "errors_by_class")}
                for r in report["curve"]
            ],
        }
        rows.append(row)
        if log:
            print(
                f"{row['dataset']:13} {row['arch']:9} {str(row['attack']):7} t={row['target_label']} "
                f"acc={row['test_accuracy']:.3f} asr={row['asr'] if row['asr'] is None else round(row['asr'], 3)} "
                f"score={row['score']:.4f} target={row['suspected_target']}",
                file=sys.stderr,
                flush=True,
            )
    neg = [r["score"] for r in rows if r["attack"] is None]
    pos = [r["score"] for r in rows if r["attack"] is not None]
    hits = [r["suspected_target"] == r["target_label"] for r in rows if r["attack"] is not None]
    threshold, balanced = best_threshold(neg, pos)
    default = ScanRunConfig(model=Path("m"), out=Path("o")).threshold
    return {
        "quick": quick,
        "models": {"clean": len(neg), "backdoored": len(pos)},
        "auroc": auroc(neg, pos),
        "target_accuracy": sum(hits) / len(hits) if hits else float("nan"),
        "threshold": threshold,
        "balanced_accuracy_at_threshold": balanced,
        "default_threshold": default,
        "balanced_accuracy_at_default": (
            sum(p > default for p in pos) / len(pos) + sum(n <= default for n in neg) / len(neg)
        )
        / 2,
        "clean_scores": {"min": min(neg), "max": max(neg)},
        "backdoored_scores": {"min": min(pos), "max": max(pos)},
        "variants": _variants(rows),
        "minutes": (time.perf_counter() - t0) / 60,
        "train_minutes": train_s / 60,
        "scan_minutes": scan_s / 60,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only, 3 clean + 3 backdoored models")
    parser.add_argument("--cache", type=Path, default=Path("runs/scan_zoo"), help="folder of the trained zoo")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the full result as JSON (else a summary)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()  # ${PRUNEGUARD_MALLOC}: tuned (default) or default
    res = run(args.quick, args.cache, log=True)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        keys = ("models", "auroc", "target_accuracy", "threshold", "balanced_accuracy_at_threshold", "minutes")
        print(json.dumps({k: res[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
