"""The detectors' figures of a split from its committed default-recipe purify reports, without its rows:
AUROC, true/false positive rate at the fixed cuts and target-class accuracy per detector, as ``zoo.py`` computes
them for its ``scan`` section (:func:`zoo.scan_figures`). For a split whose results file was written by an older
``zoo.py`` (another recipe version, so ``--join`` refuses it) but whose reports are committed.

    python benchmarks/detector_figures.py --split eval6 --join-reports benchmarks/results/eval6_zoo_reports \
        --out-json benchmarks/results/eval6_detectors.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import zoo


def report_args(split: str, clean_fraction: float, cache: str, folders: list[Path]) -> argparse.Namespace:
    """``zoo.py``'s options that find ``split``'s default-recipe reports (its cache, then ``folders``) at
    ``clean_fraction``, computing nothing."""
    argv = ["--split", split, "--cached-only", "--defenses", "none,default", "--cache", cache,
            "--clean-fraction", str(clean_fraction)]  # fmt: skip
    for folder in folders:
        argv += ["--join-reports", str(folder)]
    return zoo.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", required=True, choices=sorted(zoo.SPLIT_SEEDS))
    p.add_argument("--clean-fraction", type=float, default=0.01)
    p.add_argument("--join-reports", type=Path, action="append", required=True)
    p.add_argument("--cache", default="runs/zoo")
    p.add_argument("--out-json", type=Path, default=None)
    args = p.parse_args(argv)
    zoo_args = report_args(args.split, args.clean_fraction, args.cache, args.join_reports)
    figures = zoo.scan_figures(zoo.zoo_specs(args.split), zoo_args)
    if not figures:
        p.error(f"--join-reports={args.join_reports[0]} holds no default-recipe report of {args.split}'s models")
    result = {"split": args.split, "clean_fraction": args.clean_fraction, "scan": figures}
    if args.out_json:
        args.out_json.write_text(json.dumps(result, indent=1) + "\n")
    for name, f in figures.items():
        print(
            f"{name}: AUROC {f['auroc']:.3f}, TPR {f['tpr']:.3f}, FPR {f['fpr']:.3f}, target (flagged) "
            f"{f['target_accuracy_flagged']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
