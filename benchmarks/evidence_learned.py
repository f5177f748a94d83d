"""A learned backdoor detector over the finder's own measurements, judged split by split.

The default recipe flags a model when one rule (the relative ratio) crosses one cut. The finder records more than
that rule reads: the patch and blend triggers reversed to every class on the model and on the reference model, the
neuron-sensitivity scan's score and class. This script asks whether a logistic regression over a few features of
those records separates backdoored from clean models better than the rule alone, on models it was not fitted on:
every split is held out in turn (the model is fitted on the others, the cut taken on them at a false-positive rate
of at most ``--max-fpr``), and the held-out split's AUROC, true and false positives and target class are recorded.

    python benchmarks/evidence_learned.py \
        --rows benchmarks/results/evidence_rows_{dev2,dev3,eval3_26,eval4}.json \
        --reports benchmarks/results/eval5_zoo_reports:benchmarks/results/eval5_zoo.json \
        --reports benchmarks/results/eval6_zoo_reports:benchmarks/results/eval6_zoo.json \
        --attacks benchmarks/results/zoo_none_{dev2,eval3,eval4}.json \
        --out-json benchmarks/results/evidence_learned.json

Only development data may be given: a split whose reporting run has not happened must not be read here.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from evidence_rules import attack_asr, auroc, read_rows, report_row
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

FEATURES = ("relative", "runner_up", "sensitivity", "agree", "ratio_anomaly", "reference", "kinds_agree")


def kind_ratios(row: dict[str, Any]) -> dict[str, list[float]]:
    """Per trigger kind, every class's reversed size on the model over the reference's; a kind judged against the
    model's own classes (the warp, ``self_judged_sizes``) is its size alone, as the finder's relative rule takes it."""
    out = {
        kind: [m / r for m, r in zip(sizes, row["reference_sizes"][kind], strict=True)]
        for kind, sizes in row["model_sizes"].items()
    }
    out.update({kind: list(sizes) for kind, sizes in row.get("self_judged_sizes", {}).items()})
    return out


def features(row: dict[str, Any]) -> tuple[dict[str, float], int]:
    """The features of one evidence row and the class they point at (the smallest relative ratio's)."""
    rel: dict[str, list[float]] = {}
    raw: dict[str, list[float]] = {}
    for kind, ratios in kind_ratios(row).items():
        med = statistics.median(ratios)
        raw[kind], rel[kind] = ratios, [r / med for r in ratios]
    kind = min(rel, key=lambda k: min(rel[k]))
    order = sorted(range(len(rel[kind])), key=rel[kind].__getitem__)
    cls = order[0]
    logs = [math.log(r) for r in raw[kind]]
    med = statistics.median(logs)
    mad = 1.4826 * statistics.median(abs(v - med) for v in logs) or 1e-6
    lows = {min(range(len(v)), key=v.__getitem__) for v in rel.values()}
    f = {
        "relative": -math.log(rel[kind][cls]),
        "runner_up": -math.log(rel[kind][cls] / rel[kind][order[1]]),
        "sensitivity": float(row["sensitivity"]["score"]),
        "agree": float(row["sensitivity"]["target"] == cls),
        "ratio_anomaly": min((med - logs[cls]) / mad, 10.0),
        "reference": -math.log(min(min(raw[k]) for k in row["model_sizes"])),  # the stamps: a warp has no reference
        "kinds_agree": float(len(lows) == 1),
    }
    return f, cls


def log_relative(row: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per trigger kind, log(ratio / median class's ratio) of every class (the relative rule's measure, in logs)."""
    out = {}
    for kind, ratios in kind_ratios(row).items():
        r = np.array(ratios)
        out[kind] = np.log(r / np.median(r))
    return out


def class_prior(models: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per kind and class, the median log relative ratio over the clean ``models``: how much easier each class is
    to reach on a clean model of the task than its reference (on Fashion-MNIST the shirt, which the tops share)."""
    clean = [m["log_relative"] for m in models if not m["spec"]["backdoored"]]
    return {k: np.median(np.array([c[k] for c in clean]), axis=0) for k in clean[0]}


def calibrated(m: dict[str, Any], prior: dict[str, np.ndarray]) -> tuple[float, int]:
    """The relative rule with each class's log ratio less its ``prior``: (score, class), higher more suspicious."""
    best = (math.inf, -1)
    for kind, logs in m["log_relative"].items():
        v = logs - prior[kind]
        c = int(np.argmin(v))
        best = min(best, (float(v[c]), c))
    return -best[0], best[1]


def load(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every model's features, split, label and target."""
    out = []
    asr = attack_asr(args.attacks)
    for row in read_rows(args.rows):
        if "model_sizes" not in row:
            continue
        spec = row["spec"]
        out.append({"spec": spec, "row": row, "asr": asr.get(spec["id"])})
    for pair in args.reports:
        folder, zoo = pair.split(":")
        rows = json.loads(Path(zoo).read_text())["rows"]
        specs = {r["model"]["id"]: r["model"] for r in rows}
        before = {r["model"]["id"]: r["asr_before"] for r in rows if r["defense"] == "none"}
        for path in sorted(Path(folder).glob("*.json")):
            row = report_row(json.loads(path.read_text()))
            mid = "-".join(path.stem.split("-")[:2])
            if row is None or mid not in specs:
                continue
            out.append({"spec": specs[mid], "row": row, "asr": before.get(mid)})
    for m in out:
        m["split"] = m["spec"]["id"].rsplit("-", 1)[0]
        m["features"], m["class"] = features(m["row"])
        m["log_relative"] = log_relative(m["row"])
        m["took"] = m["spec"]["backdoored"] and (m["asr"] is None or m["asr"] >= args.took)
    return out


def cut_at(pos: np.ndarray, neg: np.ndarray, max_fpr: float) -> float:
    """The lowest cut (score >= cut flags) whose false-positive rate on ``neg`` is at most ``max_fpr``, placed
    half-way to the next lower score."""
    scores = np.sort(np.concatenate([pos, neg]))[::-1]
    best = float(scores[0]) + 1e-9
    for i, s in enumerate(scores):
        if np.mean(neg >= s) <= max_fpr:
            nxt = scores[i + 1] if i + 1 < len(scores) else s - 1.0
            best = float((s + nxt) / 2)
    return best


def judge(
    models: list[dict[str, Any]], score: np.ndarray, cut: float, classes: list[int] | None = None
) -> dict[str, Any]:
    """AUROC (all backdoored, and those whose attack took, against the clean), TPR, FPR at ``cut`` and the share of
    flagged backdoored models whose class (``classes``, else the relative ratio's) is the target."""
    y = np.array([m["spec"]["backdoored"] for m in models])
    took = np.array([m["took"] for m in models])
    flag = score >= cut
    classes = classes if classes is not None else [m["class"] for m in models]
    right = [c == m["spec"]["target_label"] for c, m in zip(classes, models, strict=True)]
    tp = [i for i in range(len(models)) if y[i] and flag[i]]
    return {
        "models": len(models),
        "backdoored": int(y.sum()),
        "auroc": auroc(list(score[y]), list(score[~y])) if y.any() and (~y).any() else None,
        "auroc_took": auroc(list(score[took]), list(score[~y])) if took.any() and (~y).any() else None,
        "cut": cut,
        "tpr": f"{len(tp)}/{int(y.sum())}",
        "fpr": f"{int((flag & ~y).sum())}/{int((~y).sum())}",
        "target": round(sum(right[i] for i in tp) / len(tp), 3) if tp else None,
    }


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def add_input_options(p: argparse.ArgumentParser) -> None:
    """The options :func:`load` reads: the development models' finder records and their attacks' success."""
    p.add_argument("--rows", type=Path, nargs="*", default=[], help="evidence_dev.py outputs")
    p.add_argument("--reports", action="append", default=[], help="FOLDER:ZOO_JSON, purify reports and their zoo run")
    p.add_argument("--attacks", type=Path, nargs="*", default=[], help="zoo.py --defenses none outputs")
    p.add_argument("--took", type=float, default=0.5, help="an attack took when its no-defence ASR is at least this")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_input_options(p)
    p.add_argument("--max-fpr", type=float, default=0.1)
    p.add_argument("--features", default=",".join(FEATURES))
    p.add_argument("--c", type=float, default=1.0, help="inverse regularisation of the logistic regression")
    p.add_argument("--out-json", type=Path, default=None)
    args = p.parse_args(argv)
    names = args.features.split(",")
    models = load(args)
    splits = sorted({m["split"] for m in models})
    X = np.array([[m["features"][n] for n in names] for m in models])
    y = np.array([m["spec"]["backdoored"] for m in models])
    result: dict[str, Any] = {"features": names, "c": args.c, "max_fpr": args.max_fpr, "held_out": {}}
    learned, prior_scored = np.zeros(len(models)), np.zeros(len(models))
    single = X[:, names.index("relative")] if "relative" in names else X[:, 0]
    for s in splits:
        test = np.array([m["split"] == s for m in models])
        scaler = StandardScaler().fit(X[~test])
        fit = LogisticRegression(C=args.c, max_iter=1000).fit(scaler.transform(X[~test]), y[~test])
        sc = fit.decision_function(scaler.transform(X))
        learned[test] = sc[test]
        train_pos, train_neg = sc[~test & y], sc[~test & ~y]
        rel_cut = cut_at(single[~test & y], single[~test & ~y], args.max_fpr)
        sub = [m for m, t in zip(models, test, strict=True) if t]
        prior = class_prior([m for m, t in zip(models, test, strict=True) if not t])
        cal = [calibrated(m, prior) for m in models]
        cs = np.array([c[0] for c in cal])
        prior_scored[test] = cs[test]
        cal_cut = cut_at(cs[~test & y], cs[~test & ~y], args.max_fpr)
        result["held_out"][s] = {
            "class_prior": judge(sub, cs[test], cal_cut, [c[1] for c, t in zip(cal, test, strict=True) if t]),
            "learned": judge(sub, sc[test], cut_at(train_pos, train_neg, args.max_fpr)),
            "relative": judge(sub, single[test], rel_cut),
            "coef": dict(zip(names, [round(float(c), 3) for c in fit.coef_[0]], strict=True)),
        }
    result["pooled"] = {
        "learned_auroc": auroc(list(learned[y]), list(learned[~y])),
        "relative_auroc": auroc(list(single[y]), list(single[~y])),
        "class_prior_auroc": auroc(list(prior_scored[y]), list(prior_scored[~y])),
    }
    scaler = StandardScaler().fit(X)
    fit = LogisticRegression(C=args.c, max_iter=1000).fit(scaler.transform(X), y)
    result["all"] = {
        "coef": dict(zip(names, [round(float(c), 3) for c in fit.coef_[0]], strict=True)),
        "mean": [round(float(v), 4) for v in scaler.mean_],
        "scale": [round(float(v), 4) for v in scaler.scale_],
        "intercept": round(float(fit.intercept_[0]), 4),
        "class_prior": {k: [round(float(math.exp(v)), 3) for v in p] for k, p in class_prior(models).items()},
    }
    text = json.dumps(result, indent=1)
    if args.out_json:
        args.out_json.write_text(text + "\n")
    print(f"{len(models)} models ({int(y.sum())} backdoored) in {', '.join(splits)}")
    for s, r in result["held_out"].items():
        a, b = r["learned"], r["relative"]
        print(
            f"{s:8s} learned AUROC {_f(a['auroc'])} (took {_f(a['auroc_took'])}) TPR {a['tpr']} FPR {a['fpr']} "
            f"target {a['target']} | relative {_f(b['auroc'])} (took {_f(b['auroc_took'])}) TPR {b['tpr']} "
            f"FPR {b['fpr']} target {b['target']}"
        )
        c = r["class_prior"]
        print(f"{'':8s} with the class prior AUROC {_f(c['auroc'])} TPR {c['tpr']} FPR {c['fpr']} target {c['target']}")
    pooled = result["pooled"]
    print(
        f"pooled out-of-split AUROC: learned {pooled['learned_auroc']:.3f}, relative {pooled['relative_auroc']:.3f},"
        f" with the class prior {pooled['class_prior_auroc']:.3f}"
    )
    print("coefficients (all splits):", result["all"]["coef"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
