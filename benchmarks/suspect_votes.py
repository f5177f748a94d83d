"""Which class each trigger-agnostic scan suspects on the ANP table's models, and what each rule makes of them.

    python benchmarks/suspect_votes.py                                  # every attack of the table (~3 min each)
    python benchmarks/suspect_votes.py --attacks sig,input_aware --json

Needs nothing but the ANP table's cache (models are trained if missing, as `benchmarks/anp_table.py` does). On
each model, with the table's clean split (1%, seed 0), as `purify --anp-target vote` runs them: the
neuron-sensitivity scan (its class, score and per-class share of the perturbed errors) and the trigger-reversal
scan (per kind, patch and blend: every class's anomaly index, the median's distance to that class's mask size
in MAD units). Prints, per model, the voices and what `reversal`, `combined` and `vote` choose; with --json,
every figure (the scans' own records; `benchmarks/results/suspect_votes.json` holds two such runs, their
`--attacks` split over two processes).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import anp_table  # noqa: E402

from pruneguard.scan.reversal import reversal_scan, scan_config
from pruneguard.scan.sensitivity import ScanConfig, scan_model
from pruneguard.scan.suspect import combine_suspects, vote_suspects
from pruneguard.workflows.common import draw_clean_split, load_for_defense

ATTACKS = (*anp_table.PAPER_ATTACKS, "wanet")


def scan_one(model_path: Path, seed: int) -> dict[str, Any]:
    loaded = load_for_defense(model_path)
    clean, _ = draw_clean_split(loaded, clean_fraction=0.01, clean_samples=None, seed=seed)
    sens = scan_model(loaded.model, clean, ScanConfig(seed=seed))
    rev = reversal_scan(loaded.model, clean, scan_config(), seed=seed)
    errors = torch.tensor(sens.errors_by_class, dtype=torch.float)
    return {
        "sensitivity": {
            "suspected_target": sens.suspected_target,
            "score": sens.score,
            "threshold": sens.threshold,
            "share_by_class": (errors / errors.sum().clamp_min(1)).tolist(),
        },
        "reversal": rev,
        "choices": {
            "reversal": rev["suspected_target"],
            "combined": combine_suspects(
                sens.suspected_target, sens.score, sens.threshold, rev["suspected_target"], rev["anomaly_index"]
            )[0],
            "vote": vote_suspects(sens.suspected_target, rev["kinds"])[0],
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attacks", default=",".join(ATTACKS))
    p.add_argument("--cache", default="runs/anp_table", help="the ANP table's cache")
    p.add_argument("--attack-params", default='{"sig": {"delta": 0.157}}', help="as the table was run")
    p.add_argument("--target-label", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    table_args = anp_table.build_parser().parse_args(
        ["--cache", args.cache, "--attack-params", args.attack_params, "--target-label", str(args.target_label)]
    )
    rows = []
    for attack in [a for a in args.attacks.split(",") if a]:
        model_path = anp_table.trained_model(attack, 0, table_args)
        row = {"attack": attack, "model": model_path.parent.name, "true_target": args.target_label}
        row |= scan_one(model_path, 0)
        rows.append(row)
        if not args.json:
            voices = [row["sensitivity"]["suspected_target"]]
            voices += [row["reversal"]["kinds"][k]["suspected_target"] for k in ("patch", "blend")]
            print(f"{attack}: sensitivity/patch/blend {voices}; chosen {row['choices']}", flush=True)
    if args.json:
        print(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
