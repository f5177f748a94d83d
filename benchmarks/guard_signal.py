"""Which validation measure sees the damage of pruning: accuracy or the divergence from the original's outputs.

    python benchmarks/guard_signal.py --models dev-01,dev-02,dev-03,dev-05,dev-06,dev-13 \
        --out-json benchmarks/results/guard_signal.json

For each development model of the zoo (``benchmarks/zoo.py``; choices are made on that split only) whose ANP
masks ``benchmarks/repair_dev.py`` has kept, the neurons are pruned in the default recipe's order (ANP's masks,
ties by their mean) and at each count of the pruning curve three figures are taken: the accuracy drop on the
recipe's 120 validation images, the mean KL divergence of the pruned model's outputs on those images from the
original's (:func:`pruneguard.metrics.mean_kl`), and the accuracy drop on 3000 test images, the damage a user
meets. The summary gives, over every (model, count) point, the rank correlation of each validation measure with
the test drop, and the worst test drop among points each measure would admit (accuracy drop <= 2 points; KL <=
0.02 and <= 0.04 nats).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402

from pruneguard.data.tensors import to_float  # noqa: E402
from pruneguard.evaluation.predict import evaluate_accuracy, predict_logits  # noqa: E402
from pruneguard.metrics import mean_kl  # noqa: E402
from pruneguard.pruning import curve_counts, find_neuron_groups, pruning_curve  # noqa: E402
from pruneguard.recipes import get_recipe  # noqa: E402
from pruneguard.utils.io import atomic_write_json  # noqa: E402
from pruneguard.workflows.common import draw_clean_split, load_for_defense  # noqa: E402
from pruneguard.workflows.purify import split_clean  # noqa: E402

logger = logging.getLogger("guard_signal")
TEST_IMAGES = 3000
STOP_TEST_DROP = 0.08  # the curve ends past this test drop: far beyond any guard


def model_curve(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    model_path = zoo.trained_model(spec, args)
    folder = Path(args.cache) / "repair_dev" / f"{model_path.parent.name}-{args.clean_fraction}"
    state = torch.load(folder / "anp_state.pt", map_location="cpu", weights_only=True)
    loaded = load_for_defense(model_path, data_dir=args.data_dir)
    clean, _ = draw_clean_split(loaded, clean_fraction=args.clean_fraction, clean_samples=None, seed=spec["seed"])
    _, validation = split_clean(clean, get_recipe("default").validation_fraction, spec["seed"])
    assert validation is not None
    test = loaded.test.subset(torch.arange(min(TEST_IMAGES, len(loaded.test))))
    model = loaded.model.eval()
    ref_val = predict_logits(model, validation)
    evaluators = {  # the first judges stop_drop: the curve ends past STOP_TEST_DROP on the test images
        "test": lambda m: evaluate_accuracy(m, test),
        "validation": lambda m: evaluate_accuracy(m, validation),
        "kl": lambda m: mean_kl(ref_val, predict_logits(m, validation)),
    }
    masks = state["mask"].clamp(0, 1)
    curve = pruning_curve(
        model,
        find_neuron_groups(model, to_float(validation.x[:2])),
        masks,
        evaluators,
        curve_counts(masks),
        stop_drop=STOP_TEST_DROP,
        tiebreak=state["mask_sum"] / max(1, int(state["iteration"])),
    )
    base = curve[0]
    rows = [
        {
            "pruned": r["pruned"],
            "validation_drop": base["validation"] - r["validation"],
            "validation_kl": r["kl"],
            "test_drop": base["test"] - r["test"],
        }
        for r in curve
    ]
    logger.info("%s: %d points", spec["id"], len(rows))
    return {"model": spec["id"], "arch": spec["arch"], "rows": rows}


def summary(curves: list[dict[str, Any]]) -> dict[str, Any]:
    points = [r for c in curves for r in c["rows"] if r["pruned"] > 0]
    test = [r["test_drop"] for r in points]

    def admitted(ok: Any) -> dict[str, Any]:
        # a guard admits a count when it and every smaller count pass (the cap's rule)
        worst, n = 0.0, 0
        for c in curves:
            for r in c["rows"]:
                if not ok(r):
                    break
                worst, n = max(worst, r["test_drop"]), n + (r["pruned"] > 0)
        return {"points": n, "worst_test_drop": worst}

    return {
        "models": len(curves),
        "points": len(points),
        "spearman_validation_drop": float(spearmanr([r["validation_drop"] for r in points], test).statistic),
        "spearman_validation_kl": float(spearmanr([r["validation_kl"] for r in points], test).statistic),
        "guards": {
            "accuracy drop <= 0.02": admitted(lambda r: r["validation_drop"] <= 0.02 + 1e-12),
            "kl <= 0.02": admitted(lambda r: r["validation_kl"] <= 0.02),
            "kl <= 0.04": admitted(lambda r: r["validation_kl"] <= 0.04),
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="comma-separated development model ids (dev-NN)")
    p.add_argument("--clean-fraction", type=float, default=0.01)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--cache", default="runs/zoo")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-json", type=Path, default=None)
    args = p.parse_args(argv)
    specs = {s["id"]: s for s in zoo.zoo_specs("dev")}
    ids = [m for m in args.models.split(",") if m]
    for bad in [m for m in ids if m not in specs]:
        p.error(f"--models: {bad!r} is not accepted; accepted: {', '.join(specs)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    args.quick, args.device, args.executor, args.split = False, "cpu", "local", "dev"
    curves = [model_curve(specs[m], args) for m in ids]
    result = {"summary": summary(curves), "curves": curves}
    if args.out_json:
        atomic_write_json(args.out_json, result)
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
