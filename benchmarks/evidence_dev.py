"""The suspect finder's raw evidence on the development zoo: the figures a backdoor-evidence rule is chosen from.

    python benchmarks/evidence_dev.py --split dev --out-json runs/evidence_dev.json [--part 0/2]

For every model of the split (trained or reused through ``zoo.py``'s cache) this draws the defender's clean data
exactly as ``purify`` does (1% of the training split, then the validation part held out), and records:

- the neuron-sensitivity scan (score, suspected class);
- Neural Cleanse's reversal (patch and blend) to every class on the model;
- the same reversals on a reference model trained on the clean data alone, for every class (``purify`` reverses
  only the vote's candidates; all classes let a rule compare the suspect's ratio with the other classes');
- the truth (backdoored or clean, target class), which only this benchmark knows.

Rows are cached per model under ``--cache/evidence`` (a rerun recomputes nothing). Only the development split may
be used to choose a rule; ``--split eval`` is refused unless ``--allow-eval`` is given, for the one reporting run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import zoo  # noqa: E402

from pruneguard.recipes import get_recipe  # noqa: E402
from pruneguard.scan.reference import reference_trigger_sizes, train_reference  # noqa: E402
from pruneguard.scan.reversal import reversal_scan, scan_config  # noqa: E402
from pruneguard.scan.sensitivity import ScanConfig, scan_model  # noqa: E402
from pruneguard.utils.device import resolve_device  # noqa: E402
from pruneguard.utils.io import atomic_write_json  # noqa: E402
from pruneguard.workflows.common import draw_clean_split, load_for_defense, on_device  # noqa: E402
from pruneguard.workflows.purify import split_clean  # noqa: E402

logger = logging.getLogger("evidence_dev")


def evidence_row(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Train (or reuse) the model of ``spec`` and record every figure an evidence rule may use (with
    ``--sensitivity-only``: the sensitivity scan's alone, cached apart)."""
    model_path = zoo.trained_model(spec, args)
    stem = Path(args.cache) / "evidence" / f"{model_path.parent.name}-{args.clean_fraction}"
    path = stem.with_name(stem.name + ".json")
    light = stem.with_name(stem.name + "-sensitivity.json")
    for cached_path in (path, light) if args.sensitivity_only else (path,):
        if cached_path.is_file():
            cached: dict[str, Any] = json.loads(cached_path.read_text())
            return cached
    recipe = get_recipe("default")
    loaded = load_for_defense(model_path, data_dir=args.data_dir)
    device = resolve_device(args.device)
    loaded = dataclasses.replace(loaded, model=on_device(loaded.model, device))
    clean, _ = draw_clean_split(loaded, clean_fraction=args.clean_fraction, clean_samples=None, seed=spec["seed"])
    use, _ = split_clean(clean, recipe.validation_fraction, spec["seed"])
    t0 = time.perf_counter()
    sens = scan_model(loaded.model, use, ScanConfig(seed=spec["seed"]))
    if args.sensitivity_only:
        row = {
            "spec": spec,
            "model": model_path.parent.name,
            "sensitivity": {"score": sens.score, "target": sens.suspected_target, "threshold": sens.threshold},
            "seconds": time.perf_counter() - t0,
        }
        atomic_write_json(light, row)
        return row
    rev = reversal_scan(loaded.model, use, scan_config(recipe.anp.batch_size), seed=spec["seed"])
    reference = train_reference(lambda: loaded.meta.build(seed=spec["seed"]), use, seed=spec["seed"], device=device)
    ref = reference_trigger_sizes(
        reference, use, range(use.num_classes), scan_config(recipe.anp.batch_size), seed=spec["seed"]
    )
    row = {
        "spec": spec,
        "model": model_path.parent.name,
        "sensitivity": {"score": sens.score, "target": sens.suspected_target, "threshold": sens.threshold},
        "model_sizes": {k: v["mask_l1"] for k, v in rev["kinds"].items()},
        "reference_sizes": {k: [v[c] for c in range(use.num_classes)] for k, v in ref["sizes"].items()},
        "seconds": time.perf_counter() - t0,
        "device": str(device),
    }
    atomic_write_json(path, row)
    return row


def selected_specs(args: argparse.Namespace, error: Any) -> list[dict[str, Any]]:
    """The split's specs that ``--models`` names (in its order; all when not given), without the architectures of
    ``--skip-archs``; ``error`` (a parser's) is called with one line for an id or architecture not accepted."""
    specs = zoo.zoo_specs(args.split)
    if args.models is not None:
        by_id = {spec["id"]: spec for spec in zoo.chosen_specs(specs, args.models, error)}
        specs = [by_id[m] for m in dict.fromkeys(args.models.split(",")) if m]
    skip = {a for a in args.skip_archs.split(",") if a}
    if skip - set(zoo.MODES["full"]["archs"]):
        error(f"--skip-archs={args.skip_archs!r} is not accepted; accepted: {', '.join(zoo.MODES['full']['archs'])}")
    return [spec for spec in specs if spec["arch"] not in skip]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", default="dev", choices=tuple(zoo.SPLIT_SEEDS))
    p.add_argument("--allow-eval", action="store_true", help="the one reporting run on the evaluation split")
    p.add_argument("--clean-fraction", type=float, default=0.01)
    p.add_argument("--cache", type=Path, default=Path("runs/zoo"))
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--part", default="0/1", help="i/n: this process takes models i, i+n, ...")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="where models are trained and scanned (cpu, cuda[:N], auto)")
    p.add_argument("--sensitivity-only", action="store_true", help="train and run the sensitivity scan only")
    p.add_argument("--models", default=None, help="comma-separated model ids of the split: only these, in this order")
    p.add_argument("--skip-archs", default="", help="comma-separated architectures left out (e.g. preact_resnet18)")
    p.add_argument("--out-json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.split in zoo.EVAL_SPLITS and not args.allow_eval:
        raise SystemExit(f"--split={args.split} chooses nothing: give --allow-eval for the reporting run")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    args.computed = {"models": [], "rows": []}
    i, n = (int(v) for v in args.part.split("/"))
    specs = selected_specs(args, p.error)[i::n]
    rows = []
    for spec in specs:
        rows.append(evidence_row(spec, args))
        logger.info("%s done (%.0f s)", spec["id"], rows[-1]["seconds"])
    if args.out_json:
        atomic_write_json(args.out_json, {"split": args.split, "clean_fraction": args.clean_fraction, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
