"""A zoo run's default rows judged again at another evidence cut, from their purify reports.

The relative rule's cut enters ``purify`` at one place: a model whose measure (its suspect's ratio over the median
class's) is above the cut has no evidence and is returned unchanged; below it, every step runs as it did (the same
seeds, the same data). So a run's rows at a lower cut are its rows, with each model whose measure lies between the
two cuts returned unchanged: accuracy and ASR after = before, and its seconds those of the finder alone (the
sensitivity scan, the reversals and the reference, as its report times them). A higher cut than the run's cannot
be judged this way (the repairs of the models it would add never ran).

    python benchmarks/recut.py --results benchmarks/results/eval6_zoo.json \
        --join-reports benchmarks/results/eval6_zoo_reports --cut 0.382 --out-json benchmarks/results/eval6_recut.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import zoo
from detector_figures import report_args


def finder_seconds(report: dict[str, Any]) -> float:
    """What the finder took in ``report``: the sensitivity scan, the reversal scan and the reference's reversals."""
    parts = [report.get("scan"), report.get("reversal_scan"), (report.get("vote") or {}).get("reference")]
    return sum(float(p.get("seconds", 0.0)) for p in parts if p)


def recut_rows(
    rows: list[dict[str, Any]], reports: dict[str, dict[str, Any]], cut: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The default rows of ``rows`` at ``cut`` (the others as they are), and what changed: each model whose report's
    measure lies above ``cut`` and at most the run's own cut, returned unchanged."""
    out, changed = [], []
    for row in rows:
        report = reports.get(row["model"]["id"]) if row["defense"] == "default" else None
        reference = ((report or {}).get("vote") or {}).get("reference") or {}
        measure, own = reference.get("measure"), reference.get("cut")
        if report is None or measure is None or "error" in row:
            out.append(row)
            continue
        if cut > own:
            raise ValueError(f"--cut={cut} is above the run's own cut {own}; accepted: a cut at most {own}")
        if report["suspect"]["evidence"] and cut < measure <= own:
            new = {**row, "accuracy_after": row["accuracy_before"], "asr_after": row["asr_before"]}
            new["seconds"] = finder_seconds(report)
            out.append(new)
            changed.append(
                {
                    "id": row["model"]["id"],
                    "measure": round(measure, 4),
                    "suspect": report["suspect"]["target"],
                    "backdoored": row["model"]["backdoored"],
                    "target": row["model"]["target_label"],
                    "accuracy_after_was": row["accuracy_after"],
                    "asr_after_was": row["asr_after"],
                }
            )
        else:
            out.append(row)
    return out, changed


def detector_at(specs: list[dict[str, Any]], reports: dict[str, dict[str, Any]], cut: float) -> dict[str, Any]:
    """The default finder as a detector at ``cut``: AUROC of its measure (the ranking does not depend on the cut),
    true and false positive rate, and the target named on the flagged backdoored models."""
    seen = []
    for spec in specs:
        report = reports.get(spec["id"])
        reference = ((report or {}).get("vote") or {}).get("reference") or {}
        if report is None or reference.get("measure") is None:
            continue
        flagged = bool(report["suspect"]["evidence"]) and reference["measure"] <= cut
        seen.append((spec, -reference["measure"], report["suspect"]["target"], flagged))
    bad = [x for x in seen if x[0]["backdoored"]]
    good = [x for x in seen if not x[0]["backdoored"]]
    hits = [x for x in bad if x[3]]
    return {
        "backdoored": len(bad),
        "clean": len(good),
        "auroc": zoo.auroc([x[1] for x in bad], [x[1] for x in good]) if bad and good else None,
        "tpr": len(hits) / len(bad) if bad else None,
        "fpr": sum(x[3] for x in good) / len(good) if good else None,
        "target_accuracy_flagged": sum(x[2] == x[0]["target_label"] for x in hits) / len(hits) if hits else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, required=True, help="a zoo.py results file with default rows")
    p.add_argument("--join-reports", type=Path, action="append", default=[])
    p.add_argument("--cache", default="runs/zoo")
    p.add_argument("--cut", type=float, required=True)
    p.add_argument("--out-json", type=Path, default=None)
    args = p.parse_args(argv)
    if not args.results.is_file():
        p.error(f"--results={args.results} is not accepted: no such file; accepted: a zoo.py results file")
    data = json.loads(args.results.read_text())
    split, fraction = data["split"], data["config"]["clean_fraction"]
    zoo_args = report_args(split, fraction, args.cache, args.join_reports)
    specs = zoo.zoo_specs(split)
    reports = {}
    for spec in specs:
        path = zoo.default_report(spec, zoo_args)
        if path is not None:
            reports[spec["id"]] = json.loads(path.read_text())
    if not reports:
        p.error(f"--join-reports: no default-recipe report of {split}'s models found; accepted: its reports' folder")
    try:
        rows, changed = recut_rows(data["rows"], reports, args.cut)
    except ValueError as exc:
        p.error(str(exc))
    result = {"split": split, "clean_fraction": fraction, "cut": args.cut, "results": str(args.results),
              "summary": {"default": zoo.summary([r for r in rows if r["defense"] == "default"])["default"]},
              "detector": detector_at(specs, reports, args.cut),
              "changed": changed, "rows": rows}  # fmt: skip
    if args.out_json:
        args.out_json.write_text(json.dumps(result, indent=1) + "\n")
    s = result["summary"]["default"]
    print(
        f"{split} at {args.cut}: {len(changed)} models unchanged that the run purified; ASR <= 1% on "
        f"{s['asr_le_1pct']:.3f} of {s['backdoored']}, drop {s['mean_acc_drop_backdoored']:.2f} (worst "
        f"{s['worst_acc_drop_backdoored']:.2f}), clean {s['mean_acc_drop_clean']:.2f} "
        f"(worst {s['worst_acc_drop_clean']:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
