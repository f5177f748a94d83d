"""How often the purify recheck's caution means a backdoor that survived: the recheck run on a zoo's kept outputs.

    python benchmarks/recheck.py --split eval2 --out-json benchmarks/results/recheck_eval2.json \
        --out-md benchmarks/results/recheck_eval2.md

``purify`` re-runs the suspect finder's evidence tests on the model it purified (the neuron-sensitivity scan and
the reference test, on the validation part: :func:`pruneguard.scan.finder.recheck_suspect`) and ends its verdict
with a caution when a test still flags it. This script runs the same function on the purified models that
``benchmarks/zoo.py`` keeps in ``--cache/defended`` (from the recipe rows computed since the zoo keeps them), with
the clean split, validation part and reference model rebuilt exactly as purify builds them (same seeds), and
sets each result beside the ASR the zoo measured on the model's own trigger: the recheck never sees that ASR.
A model is rechecked when purify would recheck it: the finder found evidence and the steps changed the model.
Results are kept per model in ``--cache/recheck`` (an interrupted run resumes).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402

from pruneguard.models import load_model  # noqa: E402
from pruneguard.recipes import Recipe  # noqa: E402
from pruneguard.reports.provenance import git_commit, versions  # noqa: E402
from pruneguard.scan.finder import SuspectFinding  # noqa: E402
from pruneguard.utils.io import atomic_write_json  # noqa: E402
from pruneguard.workflows.common import draw_clean_split, load_for_defense  # noqa: E402
from pruneguard.workflows.purify import recheck_step, rechecks, split_clean  # noqa: E402

logger = logging.getLogger("recheck")

# the ASR bins of the table, by upper bound: a backdoor removed (<= 2%), weakened, or kept
BINS = ((0.02, "ASR after <= 2%"), (0.2, "2% < ASR after <= 20%"), (1.0, "ASR after > 20%"))


def _bin(asr: float) -> str:
    return next(label for top, label in BINS if asr <= top)


def _row(cache: Path, folder: str, defense: str, fraction: float) -> dict[str, Any] | None:
    """The zoo's kept row of (model folder, defence, clean fraction); None when there is none."""
    found = sorted((cache / "rows").glob(f"{folder}-{defense}-{fraction}-*.json"))
    return json.loads(found[-1].read_text()) if found else None


def recheck_one(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any] | None:
    """The recheck of one model's kept purify output, with the zoo's figures beside it (``recheck`` None when
    purify would not recheck it); None when the zoo keeps no report, or no purified model for a model to recheck."""
    folder = zoo.train_unit(spec, args).name
    out = args.cache / "defended" / zoo.defended_name(folder, args.defense, args)  # where the zoo kept it
    report_path, purified_path = out / "report.json", out / "purified.safetensors"
    if not report_path.is_file():
        return None
    kept = args.cache / "recheck" / f"{folder}-{args.defense}-{args.clean_fraction}.json"
    if kept.is_file():
        return json.loads(kept.read_text())
    report = json.loads(report_path.read_text())
    row = _row(args.cache, folder, args.defense, args.clean_fraction)
    none = _row(args.cache, folder, "none", args.clean_fraction)
    if row is None or none is None:
        return None
    result: dict[str, Any] = {
        "model": spec["id"],
        "arch": spec["arch"],
        "trigger": spec["trigger"],
        "backdoored": spec["backdoored"],
        "target_label": spec["target_label"],
        "suspect": report["suspect"]["target"],
        "asr_before": none["asr"],
        "asr_after": row["asr"],
        "accuracy_drop": none["accuracy"] - row["accuracy"],
        "verdict": report["verdict"]["status"],
    }
    suspect = report["suspect"]
    record = {name: report[key] for name, key in (("sensitivity", "scan"), ("vote", "vote")) if report.get(key)}
    finding = SuspectFinding(suspect["target"], suspect["evidence"], suspect["reasons"], record)
    if not rechecks(finding, report):
        result["recheck"] = None
    elif not purified_path.is_file():
        return None
    else:
        t0 = time.perf_counter()
        loaded = load_for_defense(args.cache / "models" / folder / "model.safetensors", data_dir=args.data_dir)
        recipe, seed = Recipe(**report["config"]["recipe"]), report["seed"]
        clean, info = draw_clean_split(loaded, clean_fraction=args.clean_fraction, clean_samples=None, seed=seed)
        if info["clean_indices_hash"] != report["clean_indices_hash"]:
            raise RuntimeError(f"{spec['id']}: the rebuilt clean split differs from the purify run's")
        use, validation = split_clean(clean, recipe.validation_fraction, seed)
        purified, _ = load_model(purified_path)
        model = loaded.model.eval()
        result["recheck"] = recheck_step(recipe, finding, report, purified.eval(), model, use, validation,
                                         loaded.meta, seed)  # fmt: skip
        result["seconds"] = time.perf_counter() - t0
    atomic_write_json(kept, result)
    return result


def summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per group of rechecked models (backdoored by ASR after, clean): how many, and how many the recheck
    flagged, judged, and flagged per test."""
    rechecked = [r for r in results if r["recheck"] is not None]
    groups = [(label, [r for r in rechecked if r["backdoored"] and _bin(r["asr_after"]) == label]) for _, label in BINS]
    groups.append(("clean models", [r for r in rechecked if not r["backdoored"]]))
    out = []
    for label, rs in groups:
        out.append(
            {
                "group": label,
                "models": len(rs),
                "flagged": sum(r["recheck"]["evidence"] for r in rs),
                "judged": sum(r["recheck"]["judged"] for r in rs),
                "flagged_by": {
                    test: sum(r["recheck"]["tests"].get(test, {}).get("evidence", False) for r in rs)
                    for test in ("sensitivity", "reference")
                },
                "ids": [r["model"] for r in rs],
            }
        )
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| models | rechecked | flagged (sensitivity / reference) | judged | ids |",
        "|---|---|---|---|---|",
    ]
    for g in result["summary"]:
        lines.append(
            f"| {g['group']} | {g['models']} | {g['flagged']} ({g['flagged_by']['sensitivity']} / "
            f"{g['flagged_by']['reference']}) | {g['judged']} | {', '.join(g['ids'])} |"
        )
    lines += [
        "",
        "| model | arch | trigger | suspect / target | ASR before → after | sensitivity before → after | "
        "reference ratio before → after | flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        rc = r["recheck"]
        if rc is None:
            continue
        sens, ref = rc["tests"]["sensitivity"], rc["tests"].get("reference")
        lines.append(
            f"| {r['model']} | {r['arch']} | {r['trigger'] if r['backdoored'] else 'clean'} | {r['suspect']} / "
            f"{r['target_label'] if r['backdoored'] else '–'} | {100 * r['asr_before']:.1f} → "
            f"{100 * r['asr_after']:.1f} | {sens['original']['score']:.2f} → {sens['repaired']['score']:.2f} | "
            + (f"{ref['original']:.2f} → {ref['repaired']:.2f}" if ref else "–")
            + f" | {'yes' if rc['evidence'] else ('no' if rc['judged'] else 'not judged')} |"
        )
    skipped = [f"{r['model']} ({r['verdict']})" for r in result["rows"] if r["recheck"] is None]
    lines += ["", f"Not rechecked (no evidence, or nothing changed): {', '.join(skipped) or 'none'}."]
    lines += [f"No purified model kept: {', '.join(result['missing']) or 'none'}."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", required=True, choices=tuple(zoo.SPLIT_SEEDS))
    p.add_argument("--defense", default="default", help="the recipe whose kept outputs are rechecked")
    p.add_argument("--clean-fraction", type=float, default=0.01)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--cache", type=Path, default=Path("runs/zoo"))
    p.add_argument("--models", default=None, help="comma-separated model ids: only these")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(device="cpu")  # zoo.train_unit names the model folder from the spec (it trains nothing here)
    p.add_argument("--out-json", type=Path, default=None)
    p.add_argument("--out-md", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    specs = zoo.zoo_specs(args.split)
    if args.models is not None:
        specs = zoo.chosen_specs(specs, args.models, p.error)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    rows, missing = [], []
    for spec in specs:
        res = recheck_one(spec, args)
        if res is None:
            missing.append(spec["id"])
        else:
            rows.append(res)
    result = {
        "schema": "pruneguard.recheck/1",
        "split": args.split,
        "defense": args.defense,
        "summary": summary(rows),
        "rows": rows,
        "missing": missing,
        "git_commit": git_commit(),
        "versions": versions(),
    }
    zoo.write_results(args, result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
