"""Which part of the default recipe's unlearning repair costs accuracy, on development models of the zoo.

    python benchmarks/unlearn_parts.py --models dev-14,dev-05,dev-13 --out-json runs/unlearn_parts.json

The repair of the default recipe fine-tunes on the clean images plus copies stamped with triggers reversed to the
suspected class (true labels), distilling the model before the repair on clean images. On networks without
BatchNorm the guard often scales it back or undoes it. This script takes one development model (``zoo.py``'s
specs and model cache; development splits only), reverses the recipe's patch and blend triggers to the model's
true target on the clean part the recipe uses (no pruning, no suspect step: the repair alone), and runs one round
of the unlearning fine-tune with parts of it switched off (``PARTS``) at the recipe's learning rate and at the
lower ones its retries use. A row holds the validation accuracy (the recipe's held-out 20%), the test accuracy,
the ASR of the model's own trigger, the share of the images the original assigns to the target that stay there
(on the validation part, as the recipe's class guard reads it, and on the test split) and the size of the weight
change; test figures are for this table only.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402

from pruneguard.defenses.unlearning import UnlearnConfig, unlearn_  # noqa: E402
from pruneguard.evaluation.predict import evaluate_asr, predict  # noqa: E402
from pruneguard.metrics.classification import accuracy, class_kept  # noqa: E402
from pruneguard.recipes import get_recipe  # noqa: E402
from pruneguard.reports.provenance import git_commit, versions  # noqa: E402
from pruneguard.scan.reversal import REVERSAL_KINDS, TRIGGER_KINDS, ReversalConfig, reverse_trigger  # noqa: E402
from pruneguard.workflows.common import draw_clean_split, load_for_defense, trigger_set  # noqa: E402
from pruneguard.workflows.purify import split_clean  # noqa: E402

logger = logging.getLogger("unlearn_parts")

# name -> (trigger kinds stamped, distillation on, suppression on, distillation on cropped/flipped copies)
PARTS: dict[str, tuple[tuple[str, ...], bool, bool, bool]] = {
    "repair": (TRIGGER_KINDS, True, True, True),  # the default recipe's round
    "no_suppress": (TRIGGER_KINDS, True, False, True),
    "no_distill_augment": (TRIGGER_KINDS, True, True, False),
    "no_distill": (TRIGGER_KINDS, False, False, False),
    "patch_only": (("patch",), False, False, False),
    "blend_only": (("blend",), False, False, False),
    "clean_only": ((), False, False, False),  # the same fine-tune without stamped copies
    # a smooth warp reversed too (WaNet's trigger is no stamp), and the warp alone
    "repair_warp": (REVERSAL_KINDS, True, True, True),
    "warp_only": (("warp",), True, True, True),
}


def weight_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """The L2 norm of the change of every floating-point tensor of the state."""
    total = sum(float((after[k] - v).float().pow(2).sum()) for k, v in before.items() if v.is_floating_point())
    return total**0.5


def run_model(spec: dict[str, Any], parts: list[str], lrs: list[float], args: argparse.Namespace) -> list[dict]:
    model_path = zoo.trained_model(spec, args)
    loaded = load_for_defense(model_path, data_dir=args.data_dir)
    recipe = get_recipe("default")
    seed, target = spec["seed"], spec["target_label"]
    clean, _ = draw_clean_split(loaded, clean_fraction=args.clean_fraction, clean_samples=None, seed=seed)
    use, validation = split_clean(clean, recipe.validation_fraction, seed)
    assert validation is not None
    triggered = trigger_set(zoo.spec_trigger(spec, loaded.meta, model_path), loaded.test)
    model = loaded.model
    rcfg = ReversalConfig(steps=recipe.repair.reversal_steps, batch_size=recipe.anp.batch_size)
    needed = [k for k in REVERSAL_KINDS if any(k in PARTS[part][0] for part in parts)]
    trigs = {
        k: reverse_trigger(model, use, target, rcfg, generator=torch.Generator().manual_seed(seed), kind=k)
        for k in needed
    }

    own_val, own_test = predict(model, validation), predict(model, loaded.test)

    def figures(m: torch.nn.Module) -> dict[str, float | None]:
        val, test = predict(m, validation), predict(m, loaded.test)
        return {
            "validation_accuracy": accuracy(val, validation.y),
            "accuracy": accuracy(test, loaded.test.y),
            "asr": evaluate_asr(m, triggered, target),
            # what the recipe's class guard reads (validation), and the same share on the test split
            "validation_target_kept": class_kept(own_val, val, target),
            "target_kept": class_kept(own_test, test, target),
        }

    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    who = {"model": spec["id"], "arch": spec["arch"], "trigger": spec["trigger"], "target": target}
    reversed_ = {k: t.to_dict() for k, t in trigs.items()}
    rows = [{**who, "part": "none", **figures(model), "triggers": reversed_}]
    r = recipe.repair
    for lr in lrs:
        for part in parts:
            kinds, distill, suppress, augment = PARTS[part]
            student = copy.deepcopy(model)
            cfg = UnlearnConfig(
                batch_size=recipe.anp.batch_size,
                epochs=r.epochs,
                finetune_lr=lr,
                distill=r.distill if distill else 0.0,
                distill_suppress=r.suppress if suppress else 0.0,
                distill_augment=augment,
            )
            t0 = time.perf_counter()
            teacher = copy.deepcopy(model) if distill else None
            unlearn_(student, use, [trigs[k] for k in kinds], cfg, seed=seed, teacher=teacher, target=target)
            row = {**who, "part": part, "lr": lr,
                   **figures(student), "weight_change": weight_change(start, student.state_dict()),
                   "seconds": time.perf_counter() - t0}  # fmt: skip
            logger.info("%s", row)
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | arch | trigger (target) | part | lr | validation acc (%) | test acc (%) | ASR (%) "
        "| target kept, validation / test (%) | weight change (L2) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.0f}"

    for r in rows:
        lr = f"{r['lr']:.3g}" if "lr" in r else "–"
        change = f"{r['weight_change']:.2f}" if "weight_change" in r else "–"
        lines.append(
            f"| {r['model']} | {r['arch']} | {r['trigger']} ({r.get('target', '–')}) | {r['part']} | {lr} | "
            f"{100 * r['validation_accuracy']:.1f} | {100 * r['accuracy']:.2f} | {100 * r['asr']:.2f} | "
            f"{pct(r.get('validation_target_kept'))} / {pct(r.get('target_kept'))} | {change} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="comma-separated development model ids (dev-NN, eval6-NN, ...)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    p.add_argument("--lrs", default="0.01,0.00111", help="comma-separated learning rates")
    zoo.add_script_options(p)
    args = p.parse_args(argv)
    specs = {s["id"]: s for split in zoo.development_splits() for s in zoo.zoo_specs(split)}
    ids, parts = args.models.split(","), args.parts.split(",")
    for bad in [m for m in ids if m not in specs] + [v for v in parts if v not in PARTS]:
        p.error(f"--models/--parts: {bad!r} is not accepted; accepted: {', '.join([*specs, *PARTS])}")
    try:
        lrs = [float(v) for v in args.lrs.split(",")]
        if not all(v > 0 for v in lrs):
            raise ValueError
    except ValueError:
        p.error(f"--lrs={args.lrs!r} is not accepted; accepted: comma-separated positive numbers")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    zoo_args = zoo.parse_args(["--split", "dev", "--defenses", "none", "--cache", str(args.cache)]
                              + (["--data-dir", str(args.data_dir)] if args.data_dir else []))  # fmt: skip
    rows = [row for mid in ids if specs[mid]["backdoored"] for row in run_model(specs[mid], parts, lrs, zoo_args)]
    result = {
        "schema": "pruneguard.unlearn_parts/1",
        "rows": rows,
        "config": {k: str(v) for k, v in vars(args).items()},
        "git_commit": git_commit(),
        "versions": versions(),
    }
    zoo.write_results(args, result, markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
