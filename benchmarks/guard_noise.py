"""How far the accuracy guard's estimate of a repair's cost lies from the cost a user meets on the test set.

    python benchmarks/guard_noise.py --reports benchmarks/results/eval_zoo_reports \
        --reports benchmarks/results/eval2_zoo_reports --reports benchmarks/results/eval4_zoo_reports \
        --reports benchmarks/results/anp_table_default_reports --defended runs/zoo/defended \
        --out-json benchmarks/results/guard_noise.json

The guard judges every step of ``purify`` on the validation part of the clean data (120 images at 1% of
Fashion-MNIST): a step that costs more than ``max_acc_drop`` there is scaled back or undone. Two views of its noise:

- **What the guard let through** (``--reports``: directories of purify reports): for every model a step changed,
  the validation drop the guard accepted beside the test drop measured afterwards. The guard keeps a repair
  *because* its validation drop is small, so the test drop of what it keeps is larger on average (selection).
- **The spread of its statistic** (``--defended``: a zoo cache's ``defended`` folder, each purified model with its
  report naming the original): on the whole test set, the drop in accuracy of the purified model against the
  original; then ``--draws`` random draws of as many test images as the model's validation part held, and on each
  the guard's statistic (the accuracy drop) and a continuous one (the drop in mean probability of the true class).
  Their root-mean-square error against the whole test set's accuracy drop is the noise each would give a guard.
  A third statistic, the accuracy averaged over each image and its four one-pixel shifts (``shifted_accuracy``),
  asks whether label-preserving copies of the same 120 images would steady the guard: it lowers the spread by a
  quarter, but the copies add no new images, and a repair's cost on shifted images differs from its cost on the
  images as they are (a bias), so how often a 2-point guard refuses a repair that costs less than 2 test points
  (``refuses_within_limit`` in the summary) is what decides.
  Beside them, the share of test images whose prediction the repair changed (right or wrong), its spread over the
  draws, and how closely it follows the test drop across models.

Nothing is chosen here; the figures say how much a 120-image guard can promise.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.evaluation.predict import predict_logits
from pruneguard.metrics import class_kept
from pruneguard.models.io import load_model
from pruneguard.utils.io import atomic_write_json
from pruneguard.workflows.common import load_for_defense

logger = logging.getLogger("guard_noise")
PURIFIED = "purified.safetensors"


def accepted_steps(folders: list[Path]) -> list[dict[str, Any]]:
    """Per purify report whose steps changed the model: its validation and test accuracy drops (points)."""
    out = []
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            report = json.loads(path.read_text())
            if not report.get("steps") or report.get("accuracy_drop") is None:
                continue  # returned unchanged: no step for the guard to judge
            if report["accuracy_drop"] == 0 and report.get("validation_drop") == 0:
                continue
            out.append(
                {
                    "report": f"{folder.name}/{path.name}",
                    "validation_images": report.get("validation_samples"),
                    "validation_drop": 100 * report["validation_drop"],
                    "test_drop": 100 * report["accuracy_drop"],
                }
            )
    return out


def spread(
    p_orig: torch.Tensor,
    p_new: torch.Tensor,
    y: torch.Tensor,
    n: int,
    draws: int,
    generator: torch.Generator,
    *,
    suspect: int | None = None,
    kept_cut: float = 0.6,
    shifted: tuple[Tensor, Tensor] | None = None,
) -> dict[str, Any]:
    """The accuracy drop from ``p_orig`` to ``p_new`` (class probabilities of two models on the same labelled
    images ``y``) and, over ``draws`` random draws of ``n`` of the images, each statistic's mean, spread and
    root-mean-square error against it (all in points), and how often it exceeds 2 points. With ``suspect`` (the
    class the repair unlearned): the share of the images ``p_orig`` assigns to it that ``p_new`` keeps there
    (the class guard's statistic, :func:`pruneguard.metrics.class_kept`), on all images and over the draws, and
    how often a draw reads it under ``kept_cut``. With ``shifted`` (the two models' class probabilities on shifted
    copies of the images, ``(V, N, C)`` each): the accuracy drop averaged over each image and its copies."""
    pred_orig, pred_new = p_orig.argmax(1), p_new.argmax(1)
    hard = (pred_orig == y).double() - (pred_new == y).double()  # per image: 1 lost, -1 gained
    rows = torch.arange(len(y))
    soft = (p_orig[rows, y] - p_new[rows, y]).double()
    idx = torch.stack([torch.randperm(len(y), generator=generator)[:n] for _ in range(draws)])
    truth = float(hard.mean())
    changed = (pred_orig != pred_new).double()  # the prediction changed, right or wrong
    flips = changed[idx].mean(1)
    out: dict[str, Any] = {
        "test_drop": 100 * truth,
        "flipped": float((hard != 0).double().mean()),
        "changed": {"test": 100 * float(changed.mean()), "sd": 100 * float(flips.std())},
    }
    if suspect is not None:
        was = pred_orig == suspect
        stays = was & (pred_new == suspect)
        judged = was[idx].any(1)  # draws holding at least one image of the class
        kept = (stays[idx].double().sum(1) / was[idx].double().sum(1).clamp_min(1))[judged]
        out["suspect_kept"] = {
            "test": class_kept(pred_orig, pred_new, suspect),
            "mean": float(kept.mean()) if len(kept) else None,
            "sd": float(kept.std()) if len(kept) > 1 else None,
            "under_cut": float((kept < kept_cut).double().mean()) if len(kept) else None,
            "cut": kept_cut,
        }
    statistics_ = {"accuracy": hard, "true_class_probability": soft}
    if shifted is not None:
        copies = (shifted[0].argmax(-1) == y).double() - (shifted[1].argmax(-1) == y).double()  # (V, N)
        statistics_["shifted_accuracy"] = (hard + copies.sum(0)) / (1 + len(copies))
    for name, per_image in statistics_.items():
        est = per_image[idx].mean(1)
        out[name] = {
            "mean": 100 * float(est.mean()),
            "bias": 100 * (float(est.mean()) - truth),
            "sd": 100 * float(est.std()),
            "rmse": 100 * float(((est - truth) ** 2).mean().sqrt()),
            "over_2_points": float((est > 0.02).double().mean()),  # how often a 2-point guard refuses it
        }
    return out


def pixel_shifts(x: Tensor) -> list[Tensor]:
    """Images ``(N, C, H, W)`` moved by one pixel up, down, left and right, the vacated row or column zero (as the
    zero-padded crops that train the zoo's models)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    return [padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))]


def shifted_probabilities(model: torch.nn.Module, data: ArrayData) -> Tensor:
    """Class probabilities ``(4, N, C)`` of ``model`` on the :func:`pixel_shifts` of ``data``'s images."""
    views = pixel_shifts(to_float(data.x))
    return torch.stack([torch.softmax(predict_logits(model, ArrayData(v, data.y, data.num_classes)), 1) for v in views])


def statistic_spread(
    folder: Path, draws: int, generator: torch.Generator, kept_cut: float = 0.6
) -> dict[str, Any] | None:
    """:func:`spread` of the purified model in ``folder`` against its original on the test set, draws as large as
    its validation part; ``None`` when the folder keeps no purified model."""
    report_path, purified_path = folder / "report.json", folder / PURIFIED
    if not (report_path.is_file() and purified_path.is_file()):
        return None
    report = json.loads(report_path.read_text())
    n = int(report["validation_samples"])
    if n == 0:  # no validation part (ANP as published): nothing a guard read
        return None
    loaded = load_for_defense(Path(report["model"]))
    purified, _ = load_model(purified_path)
    p_orig = torch.softmax(predict_logits(loaded.model, loaded.test), 1)
    p_new = torch.softmax(predict_logits(purified, loaded.test), 1)
    suspect = (report.get("suspect") or {}).get("target")
    shifted = None
    if loaded.test.x.dim() == 4:
        shifted = (shifted_probabilities(loaded.model, loaded.test), shifted_probabilities(purified, loaded.test))
    figures = spread(
        p_orig, p_new, loaded.test.y, n, draws, generator, suspect=suspect, kept_cut=kept_cut, shifted=shifted
    )
    out = {"model": folder.name, "validation_images": n, "suspect": suspect, **figures}
    logger.info("%s: test drop %.2f, accuracy rmse %.2f", folder.name, out["test_drop"], out["accuracy"]["rmse"])
    return out


def summarise(steps: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    gaps = [s["test_drop"] - s["validation_drop"] for s in steps]
    out: dict[str, Any] = {
        "accepted": {
            "reports": len(steps),
            "mean_validation_drop": statistics.fmean(s["validation_drop"] for s in steps) if steps else None,
            "mean_test_drop": statistics.fmean(s["test_drop"] for s in steps) if steps else None,
            "mean_gap": statistics.fmean(gaps) if gaps else None,
            "sd_gap": statistics.pstdev(gaps) if gaps else None,
            "test_drop_over_2_points": sum(s["test_drop"] > 2 for s in steps),
        }
    }
    if len(steps) > 2:
        out["accepted"]["pearson"] = statistics.correlation(
            [s["validation_drop"] for s in steps], [s["test_drop"] for s in steps]
        )
    changed = [p for p in pairs if p["flipped"] > 0]
    out["spread"] = {"pairs": len(changed)}
    within = [p for p in changed if p["test_drop"] <= 2.0]
    out["spread"]["within_limit"] = len(within)
    for name in ("accuracy", "true_class_probability", "shifted_accuracy"):
        mine = [p for p in changed if name in p]
        errors = [p[name]["rmse"] for p in mine]
        out["spread"][f"{name}_rmse"] = math.sqrt(statistics.fmean(e * e for e in errors)) if errors else None
        out["spread"][f"{name}_sd"] = math.sqrt(statistics.fmean(p[name]["sd"] ** 2 for p in mine)) if mine else None
        # how often a 2-point guard on this statistic would refuse a repair whose test drop is within 2 points
        refusals = [p[name]["over_2_points"] for p in within if name in p]
        out["spread"][f"{name}_refuses_within_limit"] = statistics.fmean(refusals) if refusals else None
    out["spread"]["true_class_probability_closer_on"] = sum(
        p["true_class_probability"]["rmse"] < p["accuracy"]["rmse"] for p in changed if "true_class_probability" in p
    )
    if len(changed) > 2:  # how closely the share of changed predictions follows the test drop across models
        out["spread"]["pearson_changed_test_drop"] = statistics.correlation(
            [p["changed"]["test"] for p in changed], [p["test_drop"] for p in changed]
        )
        out["spread"]["test_drop_per_changed"] = statistics.median(
            p["test_drop"] / p["changed"]["test"] for p in changed
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reports", type=Path, action="append", default=[], help="a folder of purify reports")
    p.add_argument("--defended", type=Path, action="append", default=[], help="a zoo cache's defended folder")
    p.add_argument("--fraction", default="0.01", help="only defended folders of this clean fraction")
    p.add_argument(
        "--split", action="append", default=[], help="only defended folders of this zoo split (repeatable; default all)"
    )
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kept-cut", type=float, default=0.6, help="the class guard's cut the draws are read against")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-json", type=Path, default=None)
    args = p.parse_args(argv)
    if not 0.0 <= args.kept_cut <= 1.0:
        p.error(f"--kept-cut={args.kept_cut} is not accepted; accepted: a number in [0, 1]")
    if args.draws < 2:
        p.error(f"--draws={args.draws} is not accepted; accepted: an integer of at least 2")
    for folder in [*args.reports, *args.defended]:
        if not folder.is_dir():
            p.error(f"{folder} is not a folder; accepted: folders of purify reports or a zoo's defended folder")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    steps = accepted_steps(args.reports)
    pairs = []
    for root in args.defended:
        for folder in sorted(root.glob(f"*-{args.fraction}")):
            if args.split and not any(folder.name.startswith(f"{split}-") for split in args.split):
                continue
            pair = statistic_spread(folder, args.draws, generator, args.kept_cut)
            if pair is not None:
                pairs.append(pair)
    result = {"summary": summarise(steps, pairs), "accepted": steps, "pairs": pairs}
    if args.out_json:
        atomic_write_json(args.out_json, result)
    json.dump(result["summary"], sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
