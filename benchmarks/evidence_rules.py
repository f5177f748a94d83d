"""Backdoor-evidence rules judged on the rows of ``evidence_dev.py``: separation (AUROC), the cut a rule would take,
and its true/false positive rates and target-class accuracy at that cut.

    python benchmarks/evidence_rules.py runs/evidence_dev_*.json                       # choose (development split)
    python benchmarks/evidence_rules.py --max-fpr 0.1 runs/evidence_dev_*.json         # choose, false alarms <= 10%
    python benchmarks/evidence_rules.py --cuts cuts.json runs/evidence_eval_*.json      # report at fixed cuts
    python benchmarks/evidence_rules.py --attacks zoo_none.json ... runs/evidence_*.json  # also: attacks that took
    python benchmarks/evidence_rules.py --score-reports DIR ...   # every rule's (score, class) on purify reports
    python benchmarks/evidence_rules.py rows.json --score-reports DIR  # ... beside the rows' scores of the same models

Every rule maps a row to (score, class): a higher score is more suspicious. The cut of a rule is chosen as
``scan_zoo.py`` chooses the scan's: among the cuts with the best balanced accuracy, the midpoint of the widest gap
between neighbouring scores. With ``--cuts`` the cuts are read from a file written by a development run
(``--write-cuts``) and nothing is chosen.

A poisoned model whose attack did not take (its trigger flips fewer than ``--took`` of the test images, e.g. a SIG
model at 5%) carries no backdoor a detector could find. With ``--attacks`` (outputs of ``zoo.py --defenses none``,
which measure each model's ASR with no defence) every rule is also judged on the backdoors that took alone
(``auroc_took``, ``tpr_took``: the clean models and the cut unchanged); the cuts are still chosen on all models.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pruneguard.scan.finder import SELF_JUDGED
from pruneguard.scan.sensitivity import ScanConfig
from pruneguard.scan.suspect import reference_suspect, vote_candidates, vote_suspects

Rule = Callable[[dict[str, Any]], tuple[float, int]]


def _ratios(row: dict[str, Any]) -> dict[str, list[float]]:
    return {
        k: [m / r for m, r in zip(row["model_sizes"][k], row["reference_sizes"][k], strict=True)]
        for k in row["model_sizes"]
    }


def sensitivity(row: dict[str, Any]) -> tuple[float, int]:
    """The neuron-sensitivity scan's score."""
    return row["sensitivity"]["score"], row["sensitivity"]["target"]


def neural_cleanse(row: dict[str, Any]) -> tuple[float, int]:
    """Neural Cleanse's anomaly index of the smallest class, the larger of the two trigger kinds."""
    best = (float("-inf"), -1)
    for sizes in row["model_sizes"].values():
        med = statistics.median(sizes)
        mad = 1.4826 * statistics.median(abs(s - med) for s in sizes)
        low = min(range(len(sizes)), key=sizes.__getitem__)
        best = max(best, ((med - sizes[low]) / mad if mad > 0 else float("inf"), low))
    return best


def _vote(row: dict[str, Any]) -> tuple[int, str, int, dict[str, dict[int, float]]]:
    kinds = {k: {"suspected_target": min(range(len(v)), key=v.__getitem__), "anomaly_index": 0.0}
             for k, v in row["model_sizes"].items()}  # fmt: skip
    sens = row["sensitivity"]["target"]
    chosen, decided_by = vote_suspects(sens, kinds)
    candidates = vote_candidates(sens, kinds)
    refs = {k: {c: v[c] for c in candidates} for k, v in row["reference_sizes"].items()}
    best, ratios = reference_suspect(candidates, row["model_sizes"], refs)
    return chosen, decided_by, best, ratios


def candidate_ratio(row: dict[str, Any]) -> tuple[float, int]:
    """The vote's candidates (the classes any voice names) judged by the reference alone, majority or not."""
    _, _, best, ratios = _vote(row)
    return -min(r[best] for r in ratios.values()), best


def vote_ratio(row: dict[str, Any]) -> tuple[float, int]:
    """What ``purify`` decides with today: the class of the vote (sensitivity scan, patch and blend reversal; no
    majority: the candidate smallest against the reference), and its ratio (the smaller of the two kinds), negated."""
    chosen, decided_by, best, ratios = _vote(row)
    if decided_by != "vote":
        chosen = best
    return -min(r[chosen] for r in ratios.values()), chosen


def ratio_sensitivity(row: dict[str, Any]) -> tuple[float, int]:
    """The vote's ratio (:func:`vote_ratio`, negated) plus the sensitivity scan's score: two independent signs of a
    shortcut to one class, a trigger far smaller than the reference's and errors under neuron perturbations
    that gather on few classes, each weak on some attacks."""
    score, cls = vote_ratio(row)
    return score + row["sensitivity"]["score"], cls


def reference_ratio(row: dict[str, Any]) -> tuple[float, int]:
    """The smallest (model size / reference size) over classes and kinds, negated (smaller is more suspicious)."""
    best = (float("inf"), -1)
    for ratios in _ratios(row).values():
        low = min(range(len(ratios)), key=ratios.__getitem__)
        best = min(best, (ratios[low], low))
    return -best[0], best[1]


def relative_ratio(row: dict[str, Any]) -> tuple[float, int]:
    """The smallest ratio divided by the median ratio of its kind, negated: a model that is easier to trigger than
    the reference on every class (a small reference, a brittle architecture) is not taken for a backdoored one."""
    best = (float("inf"), -1)
    for ratios in _ratios(row).values():
        med = statistics.median(ratios)
        low = min(range(len(ratios)), key=ratios.__getitem__)
        best = min(best, (ratios[low] / med, low))
    return -best[0], best[1]


def runner_up_ratio(row: dict[str, Any]) -> tuple[float, int]:
    """The smallest ratio divided by the second smallest of its kind, negated (the smaller over the kinds): a
    backdoor has one target, so its ratio stands alone, where a clean model's easiest classes come in a group."""
    best = (float("inf"), -1)
    for ratios in _ratios(row).values():
        order = sorted(range(len(ratios)), key=ratios.__getitem__)
        best = min(best, (ratios[order[0]] / ratios[order[1]], order[0]))
    return -best[0], best[1]


def ratio_anomaly(row: dict[str, Any]) -> tuple[float, int]:
    """Neural Cleanse's anomaly index taken on log(model size / reference size) instead of the model's sizes: how
    many deviations the smallest class's ratio lies below the median class's, the larger of the two kinds."""
    best = (float("-inf"), -1)
    for ratios in _ratios(row).values():
        logs = [math.log(r) for r in ratios]
        med = statistics.median(logs)
        mad = 1.4826 * statistics.median(abs(v - med) for v in logs)
        low = min(range(len(logs)), key=logs.__getitem__)
        best = max(best, ((med - logs[low]) / mad if mad > 0 else float("inf"), low))
    return best


RULES: dict[str, Rule] = {
    "sensitivity": sensitivity,
    "vote_ratio": vote_ratio,
    "ratio_sensitivity": ratio_sensitivity,
    "candidate_ratio": candidate_ratio,
    "neural_cleanse": neural_cleanse,
    "reference_ratio": reference_ratio,
    "relative_ratio": relative_ratio,
    "runner_up_ratio": runner_up_ratio,
    "ratio_anomaly": ratio_anomaly,
}


def auroc(pos: list[float], neg: list[float]) -> float:
    """P(a backdoored model scores above a clean one), ties counting one half."""
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def choose_cut(pos: list[float], neg: list[float], max_fpr: float | None = None) -> float:
    """Among the cuts with the best balanced accuracy, the midpoint of the widest gap between neighbouring scores
    (flag: score > cut). With ``max_fpr``: among the cuts that flag at most that share of ``neg``, those with the
    best true-positive rate, then the widest gap (the cut a detector takes when false alarms have a budget)."""
    scores = sorted(set(pos + neg))
    cuts = [(a + b) / 2 for a, b in zip(scores, scores[1:], strict=False)] or scores

    def balanced(c: float) -> float:
        return (sum(p > c for p in pos) / len(pos) + sum(n <= c for n in neg) / len(neg)) / 2

    def tpr(c: float) -> float:
        return sum(p > c for p in pos) / len(pos)

    if max_fpr is None:
        merit = balanced
    else:
        cuts = [c for c in [*cuts, scores[-1]] if sum(n > c for n in neg) <= max_fpr * len(neg)]  # last: flag none
        merit = tpr
    best = max(merit(c) for c in cuts)
    widest = max(
        (c for c in cuts if merit(c) == best),
        key=lambda c: min((abs(s - c) for s in scores), default=0.0),
    )
    return widest


def report_row(report: dict[str, Any]) -> dict[str, Any] | None:
    """The evidence row of a ``purify`` report whose finder reversed the reference to every class (the relative
    rule's record): the same scans, on the same images, as ``evidence_dev.py`` records; ``None`` for a report
    without them (no scan, or the reference reversed to the candidates only)."""
    vote, rev, sens = report.get("vote"), report.get("reversal_scan"), report.get("scan")
    if not (vote and rev and sens):
        return None
    refs = vote["reference"]["sizes"]
    sizes = {k: v["mask_l1"] for k, v in rev["kinds"].items() if k not in SELF_JUDGED}
    classes = len(next(iter(sizes.values())))
    if any(len(refs.get(k, {})) < classes for k in sizes):
        return None
    row = {
        "sensitivity": {"score": sens["score"], "target": sens["suspected_target"], "threshold": sens["threshold"]},
        "model_sizes": sizes,
        "reference_sizes": {k: [refs[k][str(c)] for c in range(classes)] for k in sizes},
    }
    own = {k: v["mask_l1"] for k, v in rev["kinds"].items() if k in SELF_JUDGED}
    if own:  # a warp: judged against the model's own classes (the relative rule only; the other rules read stamps)
        row["self_judged_sizes"] = own
    return row


def score_reports(folders: list[Path], rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every rule's (score, class) on each purify report of ``folders`` (``*.json`` in a folder, or
    ``*/report.json`` beside a purified model), with the decision the report's own run made; with ``rows``
    (``evidence_dev.py`` rows), also the scores of the row of the same model (``row_scores``): the same scans run
    elsewhere (another device, another run) beside the report's."""
    by_model = {r["model"]: r for r in rows or []}
    out: dict[str, Any] = {}
    for folder in folders:
        for path in sorted([*folder.glob("*.json"), *folder.glob("*/report.json")]):
            report = json.loads(path.read_text())
            row = report_row(report)
            if row is None:
                continue
            name = path.parent.name if path.name == "report.json" else path.stem
            entry = out[f"{folder.name}/{name}"] = {
                "evidence": report["suspect"]["evidence"],
                "suspect": report["suspect"]["target"],
                "scores": {n: [round(v, 4) for v in RULES[n](row)] for n in RULES},
            }
            same = [r for m, r in by_model.items() if name == m or name.startswith(m + "-")]
            if same and "model_sizes" in same[0]:
                entry["row_scores"] = {n: [round(v, 4) for v in RULES[n](same[0])] for n in RULES}
    return out


def read_rows(files: list[Path]) -> list[dict[str, Any]]:
    """The raw rows of ``files``: each an ``evidence_dev.py`` output (``{"rows": [...]}``) or one cached row."""
    rows: list[dict[str, Any]] = []
    for f in files:
        data = json.loads(f.read_text())
        rows += data["rows"] if "rows" in data else [data]
    return rows


def score_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rule's (score, class) on each raw row of ``evidence_dev.py``, with the row's spec and sensitivity scan
    (rows of a ``--sensitivity-only`` run score that rule alone)."""
    out = []
    for r in rows:
        names = RULES if "model_sizes" in r else ("sensitivity",)
        out.append({"spec": r["spec"], "sensitivity": r["sensitivity"], "scores": {n: RULES[n](r) for n in names}})
    return out


def read_scored(data: dict[str, Any], threshold: float) -> list[dict[str, Any]]:
    """The scored rows of an earlier output of this script written with ``--rows`` (its raw rows are not kept):
    per model, each rule's (score, class); the sensitivity scan's cut, which those rows do not carry, is
    ``threshold``."""
    models: dict[str, dict[str, Any]] = {}
    for name, result in data["rules"].items():
        if name not in RULES:
            continue  # a combination: recomputed from its parts
        for row in result["rows"]:
            spec = {"id": row["id"], "backdoored": row["backdoored"], "target_label": row["target"]}
            entry = models.setdefault(row["id"], {"spec": spec, "scores": {}})
            entry["scores"][name] = (row["score"], row["class"])
    for entry in models.values():
        score, cls = entry["scores"]["sensitivity"]
        entry["sensitivity"] = {"score": score, "target": cls, "threshold": threshold}
    return list(models.values())


def attack_asr(files: list[Path]) -> dict[str, float]:
    """Each model's attack success rate with no defence, by model id, from ``zoo.py`` outputs (their ``none``
    rows' ``asr_before``)."""
    out: dict[str, float] = {}
    for f in files:
        for row in json.loads(f.read_text())["rows"]:
            if row["asr_before"] is not None:
                out[row["model"]["id"]] = row["asr_before"]
    return out


def mark_took(scored: list[dict[str, Any]], asr: dict[str, float], took: float) -> list[str]:
    """Set ``took`` on every backdoored row (its attack's ASR with no defence is at least ``took``); the ids of
    backdoored rows ``asr`` does not know, which stay unmarked."""
    unknown = []
    for r in scored:
        if r["spec"]["backdoored"]:
            if r["spec"]["id"] in asr:
                r["took"] = asr[r["spec"]["id"]] >= took
            else:
                unknown.append(r["spec"]["id"])
    return unknown


def judge(scored: list[dict[str, Any]], cuts: dict[str, float] | None, max_fpr: float | None = None) -> dict[str, Any]:
    """Per rule, on the models that have its score: AUROC, the cut (chosen, or ``cuts``'s), TPR, FPR and the
    target-class accuracy (on the flagged backdoored models and on all); where rows carry ``took``
    (:func:`mark_took`), AUROC and TPR on the backdoors that took; then each rule or'ed with the sensitivity scan
    at its own cut, as the finder decides."""
    out: dict[str, Any] = {}
    for name in RULES:
        have = [(r["scores"][name], r["spec"]) for r in scored if name in r["scores"]]
        if not have or (cuts is not None and name not in cuts):  # a cuts file from before the rule existed
            continue
        pos = [s for (s, _), spec in have if spec["backdoored"]]
        neg = [s for (s, _), spec in have if not spec["backdoored"]]
        cut = cuts[name] if cuts else choose_cut(pos, neg, max_fpr)
        flagged_bd = [(c, spec) for (s, c), spec in have if spec["backdoored"] and s > cut]
        out[name] = {
            "models": len(have),
            "auroc": auroc(pos, neg),
            "cut": cut,
            "tpr": len(flagged_bd) / len(pos) if pos else None,
            "fpr": sum(n > cut for n in neg) / len(neg) if neg else None,
            "target_accuracy": (
                sum(c == spec["target_label"] for c, spec in flagged_bd) / len(flagged_bd) if flagged_bd else None
            ),
            "target_accuracy_all": sum(c == spec["target_label"] for (_, c), spec in have if spec["backdoored"])
            / max(1, len(pos)),
            "rows": [
                {
                    "id": spec["id"],
                    "backdoored": spec["backdoored"],
                    "target": spec["target_label"],
                    "score": round(s, 4),
                    "class": c,
                }
                for (s, c), spec in have
            ],  # fmt: skip
        }
        took = [r["scores"][name][0] for r in scored if name in r["scores"] and r.get("took")]
        if any("took" in r for r in scored):
            out[name]["backdoored_took"] = len(took)
            out[name]["auroc_took"] = auroc(took, neg)
            out[name]["tpr_took"] = sum(s > cut for s in took) / len(took) if took else None
    for name in [n for n in out if n not in ("sensitivity", "neural_cleanse")]:
        out[f"sensitivity_or_{name}"] = _either([r for r in scored if name in r["scores"]], name, out[name]["cut"])
    return out


def _either(scored: list[dict[str, Any]], name: str, cut: float) -> dict[str, Any]:
    """The finder's decision: evidence when the sensitivity scan passes its own calibrated cut or rule ``name``
    passes ``cut``; the class is the sensitivity scan's when it alone fires, else the rule's."""
    flagged: list[tuple[int, dict[str, Any]]] = []
    for r in scored:
        score, cls = r["scores"][name]
        sens = r["sensitivity"]["score"] > r["sensitivity"]["threshold"]
        if score > cut or sens:
            flagged.append((cls if score > cut else r["sensitivity"]["target"], r["spec"]))
    pos = sum(r["spec"]["backdoored"] for r in scored)
    neg = len(scored) - pos
    bd = [(c, spec) for c, spec in flagged if spec["backdoored"]]
    found = {spec["id"] for _, spec in bd}
    return {
        "models": len(scored),
        "tpr": len(bd) / pos if pos else None,
        "fpr": (len(flagged) - len(bd)) / neg if neg else None,
        "target_accuracy": sum(c == spec["target_label"] for c, spec in bd) / len(bd) if bd else None,
        "flagged_clean": [spec["id"] for _, spec in flagged if not spec["backdoored"]],
        "missed": [r["spec"]["id"] for r in scored if r["spec"]["backdoored"] and r["spec"]["id"] not in found],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, help="evidence_dev.py outputs or cached rows")
    p.add_argument("--score-reports", type=Path, nargs="+", default=None,
                   help="folders of purify reports: print every rule's (score, class) on each (beside the given "
                   "rows' scores of the same models), and stop")  # fmt: skip
    p.add_argument("--cuts", type=Path, default=None, help="fixed cuts (JSON {rule: cut}) from a development run")
    p.add_argument("--write-cuts", type=Path, default=None)
    p.add_argument(
        "--max-fpr",
        type=float,
        default=None,
        help="choose each cut for the best TPR at most this false-positive rate (default: balanced accuracy)",
    )
    p.add_argument("--rows", action="store_true", help="print every model's score")
    p.add_argument("--attacks", type=Path, action="append", default=[],
                   help="a zoo.py output with the models' ASR with no defence (repeatable): judge also on the "
                   "backdoors that took")  # fmt: skip
    p.add_argument("--took", type=float, default=0.5, help="an attack took when its ASR is at least this")
    p.add_argument(
        "--scored",
        type=Path,
        action="append",
        default=[],
        help="an earlier output of this script written with --rows: its models' scores join (repeatable)",
    )
    p.add_argument("--sensitivity-cut", type=float, default=ScanConfig().threshold,
                   help="the sensitivity scan's cut for --scored rows (they do not carry it)")  # fmt: skip
    args = p.parse_args(argv)
    if args.max_fpr is not None and not 0 <= args.max_fpr <= 1:
        p.error(f"--max-fpr={args.max_fpr} is not accepted; accepted: a share between 0 and 1")
    if not 0 < args.took <= 1:
        p.error(f"--took={args.took} is not accepted; accepted: a share above 0, at most 1")
    if args.score_reports is not None:  # the rows given: the same models' scans, scored beside the reports
        json.dump(score_reports(args.score_reports, read_rows(args.files)), sys.stdout, indent=1)
        print()
        return 0
    if not args.files:
        p.error("no row files given; accepted: evidence_dev.py outputs or cached rows (or --score-reports)")
    scored = score_rows(read_rows(args.files))
    for f in args.scored:
        scored += read_scored(json.loads(f.read_text()), args.sensitivity_cut)
    ids = [r["spec"]["id"] for r in scored]
    if len(set(ids)) != len(ids):
        p.error(f"a model appears twice among the rows: {sorted({i for i in ids if ids.count(i) > 1})}")
    unknown = mark_took(scored, attack_asr(args.attacks), args.took) if args.attacks else []
    if unknown:
        p.error(f"--attacks: no ASR for the backdoored models {unknown}; accepted: zoo.py outputs covering them")
    cuts = json.loads(args.cuts.read_text()) if args.cuts else None
    result = judge(scored, cuts, args.max_fpr)
    if args.write_cuts:
        args.write_cuts.write_text(json.dumps({k: v["cut"] for k, v in result.items() if "cut" in v}, indent=1) + "\n")
    if not args.rows:
        for v in result.values():
            v.pop("rows", None)
    json.dump({"models": len(scored), "rules": result}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
