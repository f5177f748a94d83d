"""What a recipe does to models that have no backdoor: test accuracy before and after, on clean models.

    python benchmarks/clean_purify.py --json                          # every clean model below, default recipe
    python benchmarks/clean_purify.py --part 0/2 & python benchmarks/clean_purify.py --part 1/2   # two processes

The clean models are the scan zoo's (``benchmarks/scan_zoo.py``: 8 digits models, small_cnn and gap_cnn at width
0.5; 4 Fashion-MNIST models at width 0.5, 2 epochs) and the ANP table's clean small_cnn on Fashion-MNIST (full
width, 4 epochs) for seeds 0 and 1 (``benchmarks/anp_table.py``). Each is trained once into its cache. The recipe
runs as ``purify --recipe NAME`` does, with the clean data the model's benchmark uses (Fashion-MNIST: 1% of the
training split, digits: 140 images, as the scan zoo), its result kept under ``--cache/rows`` keyed by the model
and the recipe's full config, so a split run is assembled by a last run that finds every row. A recipe that is
safe on clean models changes their test accuracy by little: the figures are the change per model, its mean and
its worst.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anp_table  # noqa: E402
import scan_zoo  # noqa: E402

from pruneguard.config import PurifyConfig  # noqa: E402
from pruneguard.recipes import get_recipe  # noqa: E402
from pruneguard.utils.allocator import tune_allocator  # noqa: E402
from pruneguard.utils.io import atomic_write_json  # noqa: E402
from pruneguard.workflows.purify import purify  # noqa: E402

logger = logging.getLogger("clean_purify")


def _catalogue() -> list[tuple[str, dict[str, Any] | int]]:
    """Every clean model in the order they run: its name and the scan zoo's spec, or the ANP table's seed."""
    specs = [s for s in scan_zoo.zoo(quick=False) if s["attack"] is None]
    out: list[tuple[str, dict[str, Any] | int]] = [
        (f"{s['dataset']}-{s['arch']}-w{s['width']}-s{s['seed']}", s) for s in specs
    ]
    return out + [(f"fashion_mnist-small_cnn-w1.0-s{seed}", seed) for seed in (0, 1)]


def model_names() -> list[str]:
    """The names of the clean models, in the order they run."""
    return [name for name, _ in _catalogue()]


def clean_models(args: argparse.Namespace, names: list[str] | None = None) -> list[dict[str, Any]]:
    """(name, model path, clean-data size) of every clean model (or of those ``names``), trained if missing."""
    table_args = anp_table.build_parser().parse_args(["--cache", args.table_cache])
    out = []
    for name, source in _catalogue():
        if names and name not in names:
            continue
        if isinstance(source, int):  # the ANP table's clean model of this seed
            path = anp_table.trained_model(None, source, table_args)
            out.append({"name": name, "model": path, "size": {"clean_fraction": 0.01}})
            continue
        path, _, _ = scan_zoo.train_cached(source, Path(args.zoo_cache))
        digits = source["dataset"] == "digits"
        size = {"clean_samples": scan_zoo._DATA["digits"][3]} if digits else {"clean_fraction": 0.01}
        out.append({"name": name, "model": path, "size": size})
    return out


def run_one(entry: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The recipe on one clean model (cached by model folder and recipe config)."""
    recipe = get_recipe(args.recipe)  # what PurifyConfig resolves the name to
    key = hashlib.sha256(
        json.dumps(
            {"model": entry["model"].parent.name, "recipe": recipe.to_dict(), **entry["size"]}, sort_keys=True
        ).encode()  # fmt: skip
    ).hexdigest()[:16]
    name = f"{entry['name']}-{args.recipe}-{key}"
    # a run folder per model and recipe config: two recipes on one model neither resume in nor overwrite each other
    cfg = PurifyConfig(model=entry["model"], out=Path(args.cache) / "runs" / name, recipe=args.recipe, **entry["size"])
    path = Path(args.cache) / "rows" / f"{name}.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    if args.cached_only:
        return {}
    report, _, _ = purify(cfg, resume=True)
    atomic_write_json(cfg.out / "report.json", report)  # the purify report, for audit (the row keeps the figures)
    vote = report.get("vote") or {}
    row = {
        "model": entry["name"],
        "recipe": args.recipe,
        "before": report["before"]["accuracy"],
        "after": report["after"]["accuracy"],
        "change": report["after"]["accuracy"] - report["before"]["accuracy"],
        "verdict": report["verdict"]["status"],
        "sentence": report["verdict"]["sentence"],
        "suspect": report["suspect"]["target"],
        "evidence": report["suspect"]["evidence"],
        "reasons": report["suspect"]["reasons"],
        "kind": vote.get("kind"),  # the trigger kind that decided the evidence measure
        "measure": (vote.get("reference") or {}).get("measure"),
        "pruned": report["pruned_neurons"],
        "seconds": report["seconds"],
        "git_commit": report["git_commit"],
    }
    atomic_write_json(path, row)
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    changes = [r["change"] for r in rows]
    return {
        "models": len(rows),
        "mean_change_points": 100 * statistics.mean(changes),
        "worst_change_points": 100 * min(changes),
        "changed_models": sum(r["verdict"] != "unchanged" for r in rows),
        "flagged_models": sum(bool(r["evidence"]) for r in rows),
        "mean_seconds": statistics.mean(r["seconds"] for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="default")
    p.add_argument("--cache", default="runs/clean_purify")
    p.add_argument("--zoo-cache", default="runs/scan_zoo")
    p.add_argument("--table-cache", default="runs/anp_table")
    p.add_argument("--part", default="0/1", help="i/n: run every n-th model from the i-th (processes share the cache)")
    p.add_argument("--models", default="", help="comma-separated model names (default: every clean model)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cached-only", action="store_true", help="summarise the rows already computed, compute none")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    i, n = (int(v) for v in args.part.split("/"))
    names, known = [m for m in args.models.split(",") if m], model_names()
    for bad in [m for m in names if m not in known]:
        p.error(f"--models: {bad!r} is not accepted; accepted: {', '.join(known)}")
    models = clean_models(args, names)
    rows = [r for r in (run_one(m, args) for m in models[i::n]) if r]
    for r in rows:
        logger.info("%s: %.4f -> %.4f (%s)", r["model"], r["before"], r["after"], r["verdict"])
    result = {"summary": summary(rows), "rows": rows, "config": vars(args)}
    print(json.dumps(result, indent=2) if args.json else json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
