"""A data-free backdoor statistic on the development zoo: the largest logit margin each class can reach (MM-BD).

    python benchmarks/margin_dev.py --split eval6 --join-reports benchmarks/results/eval6_zoo_reports

MM-BD (Wang et al., "MM-BD: post-training detection of backdoor attacks with arbitrary backdoor pattern types
using a maximum margin statistic", IEEE S&P 2024) needs no clean data: for every class ``c`` it searches the input
box [0, 1] for the image that maximises ``z_c − max_{k≠c} z_k`` (gradient ascent from random starts); a backdoor
target is reachable with a far larger margin than the other classes, whatever the trigger's shape, because its
shortcut feature can be pushed beyond anything a natural image shows. The class with the largest margin is the
suspect; this script records, per model, every class's margin, and two statistics of the largest: its robust
z-score among the other classes' (the median and MAD) and its ratio to the second largest. The finder's own
measure is read from the default recipe's purify report (``--join-reports``) so that a rule can be judged beside
it, in particular on the backdoors the finder misses.

Only cached models are read (``zoo.py`` trains them); rows are cached under ``--cache/margin``. Development data
only: the evaluation splits (``zoo.EVAL_SPLITS``) are refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import zoo  # noqa: E402
from evidence_dev import selected_specs  # noqa: E402
from evidence_rules import auroc  # noqa: E402

from pruneguard.utils.device import resolve_device  # noqa: E402
from pruneguard.utils.io import atomic_write_json  # noqa: E402
from pruneguard.utils.modes import frozen  # noqa: E402
from pruneguard.workflows.common import load_for_defense  # noqa: E402

logger = logging.getLogger("margin_dev")


def class_margins(model: nn.Module, shape: tuple[int, ...], *, starts: int, steps: int, seed: int) -> list[float]:
    """The largest margin ``z_c − max_{k≠c} z_k`` Adam finds for each class from ``starts`` random images in the
    box [0, 1] (``x = sigmoid(3u)``, ``steps`` steps of rate 0.05); the model is not changed."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    out = []
    with frozen(model), torch.no_grad():
        num_classes = model(torch.rand((1, *shape), generator=g).to(device)).shape[1]
    with frozen(model):
        for c in range(num_classes):
            u = (torch.rand((starts, *shape), generator=g) * 2 - 1).to(device).requires_grad_(True)
            opt = torch.optim.Adam([u], lr=0.05)
            for _ in range(steps):
                opt.zero_grad()
                (-_margin(model(torch.sigmoid(3 * u)), c).sum()).backward()
                opt.step()
            with torch.no_grad():
                out.append(float(_margin(model(torch.sigmoid(3 * u)), c).max()))
    return out


def _margin(logits: Tensor, c: int) -> Tensor:
    others = logits.clone()
    others[:, c] = float("-inf")
    return logits[:, c] - others.max(1).values


def margin_statistics(margins: list[float]) -> dict[str, Any]:
    """The class of the largest margin, its robust z-score among the other classes' (median, 1.4826·MAD) and its
    ratio to the second largest margin."""
    c = max(range(len(margins)), key=margins.__getitem__)
    rest = margins[:c] + margins[c + 1 :]
    med = statistics.median(rest)
    mad = statistics.median(abs(v - med) for v in rest) * 1.4826
    return {
        "class": c,
        "z": (margins[c] - med) / mad if mad > 0 else float("inf"),
        "ratio": margins[c] / sorted(margins)[-2],
    }


def finder_record(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any] | None:
    """The default recipe's finder on this model, from its purify report: class, evidence, relative measure."""
    path = zoo.default_report(spec, args)
    if path is None:
        return None
    report = json.loads(path.read_text())
    reference = (report.get("vote") or {}).get("reference") or {}
    return {
        "class": report["suspect"]["target"],
        "evidence": bool(report["suspect"]["evidence"]),
        "measure": reference.get("measure"),
    }


def margin_row(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any] | None:
    """The row of ``spec``'s model (None when the model is not in the cache)."""
    folder = zoo.train_unit(spec, args).name
    model_path = Path(args.cache) / "models" / folder / zoo.MODEL_NAME
    if not model_path.is_file():
        return None
    cache = Path(args.cache) / "margin" / f"{folder}-{args.starts}x{args.steps}.json"
    if cache.is_file():
        row: dict[str, Any] = json.loads(cache.read_text())
    else:
        loaded = load_for_defense(model_path, data_dir=args.data_dir)
        t0 = time.perf_counter()
        margins = class_margins(
            loaded.model.to(resolve_device(args.device)).eval(),
            tuple(loaded.meta.input_shape),
            starts=args.starts,
            steps=args.steps,
            seed=spec["seed"],
        )
        row = {"model": folder, "margins": margins, "seconds": time.perf_counter() - t0}
        atomic_write_json(cache, row)
    return {"spec": spec, **row, **margin_statistics(row["margins"]), "finder": finder_record(spec, args)}


def summary(rows: list[dict[str, Any]], cut: float) -> dict[str, Any]:
    """Per statistic: AUROC (backdoored against clean; and on the backdoors whose attack took, by the zoo's
    no-defence row where the report gives it) and the share of backdoored models whose largest class is the
    target; the ratio at ``cut``: flagged backdoored and clean models, and what it adds to the finder's evidence."""
    bad = [r for r in rows if r["spec"]["backdoored"]]
    good = [r for r in rows if not r["spec"]["backdoored"]]
    out: dict[str, Any] = {"backdoored": len(bad), "clean": len(good)}
    for stat in ("z", "ratio"):
        out[f"auroc_{stat}"] = auroc([r[stat] for r in bad], [r[stat] for r in good]) if bad and good else None
    out["target_named"] = sum(r["class"] == r["spec"]["target_label"] for r in bad)
    flagged = [r for r in bad if r["ratio"] >= cut]
    out["cut"] = cut
    out["flagged_backdoored"] = len(flagged)
    out["flagged_right_class"] = sum(r["class"] == r["spec"]["target_label"] for r in flagged)
    out["flagged_clean"] = sum(r["ratio"] >= cut for r in good)
    missed = [r for r in bad if r["finder"] is not None and not r["finder"]["evidence"]]
    out["finder_missed"] = [r["spec"]["id"] for r in missed]
    out["finder_missed_flagged_right"] = [
        r["spec"]["id"] for r in missed if r["ratio"] >= cut and r["class"] == r["spec"]["target_label"]
    ]
    return out


def markdown(rows: list[dict[str, Any]], figures: dict[str, Any]) -> str:
    """The rows as a table (the largest margin's class, z-score and ratio; the finder's class, measure and
    evidence), then the summary."""
    head = "| model | architecture | trigger (target) | margin: class, z, ratio | finder: class, measure, flagged |"
    lines = [head, "|---|---|---|---|---|"]
    for r in rows:
        s, f = r["spec"], r["finder"]
        truth = f"{s['trigger']} ({s['target_label']})" if s["backdoored"] else "clean"
        found = f"{f['class']}, {f['measure']:.3f}, {'yes' if f['evidence'] else 'no'}" if f else "–"
        lines.append(f"| {s['id']} | {s['arch']} | {truth} | {r['class']}, {r['z']:.1f}, {r['ratio']:.2f} | {found} |")
    return "\n".join(lines) + "\n\n```\n" + json.dumps(figures, indent=1) + "\n```\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", required=True, action="append", choices=tuple(zoo.SPLIT_SEEDS))
    p.add_argument("--cache", type=Path, default=Path("runs/zoo"))
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--models", default=None, help="comma-separated model ids: only these")
    p.add_argument("--skip-archs", default="", help="comma-separated architectures left out")
    p.add_argument("--join-reports", type=Path, action="append", default=[], help="folders of default reports")
    p.add_argument("--starts", type=int, default=16)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--cut", type=float, default=1.3, help="the ratio at which a model counts as flagged")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="where the margins are searched (cpu, cuda[:N], auto)")
    p.add_argument("--out-json", type=Path, default=None)
    p.add_argument("--out-md", type=Path, default=None)
    args = p.parse_args(argv)
    for split in args.split:
        if split in zoo.EVAL_SPLITS:
            accepted = ", ".join(zoo.development_splits())
            p.error(f"--split={split} is an evaluation split, not development data; accepted: {accepted}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    args.clean_fraction, args.user_sets = 0.01, []
    rows = []
    for split in args.split:
        args_split = argparse.Namespace(**{**vars(args), "split": split})
        ids = args.models and ",".join(m for m in args.models.split(",") if m.startswith(f"{split}-"))
        args_split.models = ids or None
        for spec in selected_specs(args_split, p.error):
            row = margin_row(spec, args_split)
            if row is None:
                logger.info("%s: not in the cache, left out", spec["id"])
                continue
            rows.append(row)
            logger.info(
                "%s: class %d, z %.1f, ratio %.2f (%.0f s)",
                spec["id"],
                row["class"],
                row["z"],
                row["ratio"],
                row["seconds"],
            )
    figures = summary(rows, args.cut)
    print(json.dumps(figures, indent=1))
    if args.out_json:
        atomic_write_json(
            args.out_json,
            {"splits": args.split, "starts": args.starts, "steps": args.steps, "summary": figures, "rows": rows},
        )
    if args.out_md:
        args.out_md.write_text(markdown(rows, figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
