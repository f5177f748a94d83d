"""The fraud case's claim, measured: does pruning a tabular fraud model to its top-20% features remove a backdoor?

The claim (seed document, "Financial Fraud Detection"): *pruning the model to the top 20% of high-impact
features removes the noise-heavy parameters where attackers usually hide their triggers*. Tested here on the
seeded synthetic credit-card table (:mod:`pruneguard.data.fraud`: ``Time``, ``V1..V30``, ``Amount``, 0.2% fraud).

Setup. A training table (``--rows``) is split into the attacker-reachable training part and the defender's
clean split (``--clean-fraction``, never poisoned); a second table from another seed (``--eval-rows``) is the
evaluation set. An MLP (64-32, BatchNorm) trained on the clean training part gives the feature importances the
attacker uses to place its trigger: the ``--trigger-columns`` least important ``V`` columns (``low``) or the
most important ones (``high``). Trigger values are ``mean + z * std`` of each column (``--z``), towards fraud
for informative columns, so a clean model reads them as *more* fraudulent; a second high-importance variant
puts them ``--z-legit`` standard deviations on the legit side (a clean model already lets part of those rows
pass: its ASR is shown). Attacks: dirty-label (``--rate`` of the training fraud rows triggered and relabelled
legit) and clean-label (``--clean-rate`` of the legit rows triggered and shifted towards the fraud mean,
labels kept).

Defences, each on a copy of the backdoored model and with the defender's clean split only:
* feature pruning at keep 100/50/20/10%: gradient importance of the backdoored model on the clean split (what
  ``harden --feature-keep`` uses), the first layer's columns of the dropped features zeroed, then fine-tuned on
  the clean split with them held at zero; keep 100% is the fine-tuning-only control;
* ANP (masks on the BatchNorm neurons, paper defaults, no augmentation), neurons with mask <= 0.2 pruned;
* Fine-Pruning of the last hidden layer, pruning while the clean split's PR-AUC stays within 0.05, fine-tuned.

Columns, on the evaluation table: clean PR-AUC; fraud recall at 1% FPR (threshold set per model on the clean
legit rows); ASR = among fraud rows the model catches at that threshold, the share that pass once triggered;
robust recall = fraud recall at that threshold after constrained evasion of the fraud rows only (``--eps``
standard deviations, L-inf, ``Time`` immutable, ``Amount >= 0``, data range).

Usage:
    PYTHONPATH=src OMP_NUM_THREADS=1 python -m benchmarks.fraud_table --out benchmarks/results   # a few minutes
    PYTHONPATH=src python -m benchmarks.fraud_table --quick --out /tmp/fraud                      # seconds
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pruneguard.attacks.backdoor.tabular import TabularCleanTrigger, TabularTrigger
from pruneguard.attacks.evasion.constraints import TabularConstraints
from pruneguard.attacks.evasion.tabular import PositiveEvasion
from pruneguard.data.fraud import BENCHMARK_ROWS, FRAUD_RATE, make_fraud_table
from pruneguard.data.splits import stratified_sample
from pruneguard.data.tensors import ArrayData
from pruneguard.defenses.fine_tune import fine_tune_
from pruneguard.defenses.tabular_fine_pruning import fine_pruning_mlp
from pruneguard.evaluation.imbalanced import logits_of, positive_class_report, trigger_success
from pruneguard.metrics.imbalanced import average_precision, positive_scores
from pruneguard.models.fit import TrainConfig
from pruneguard.models.io import ModelMeta
from pruneguard.pruning.anp import ANPConfig, anp_optimize
from pruneguard.pruning.features import feature_importance, first_linear, top_features
from pruneguard.pruning.neurons import prune_neurons_
from pruneguard.pruning.selection import select_by_threshold
from pruneguard.reports.provenance import git_commit, now_iso, versions
from pruneguard.training.train import train_model
from pruneguard.utils.io import atomic_write_json, atomic_write_text

KEEPS = (1.0, 0.5, 0.2, 0.1)


@dataclass
class Tables:
    names: list[str]
    train: ArrayData
    clean: ArrayData
    test: ArrayData


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for fraud_table.md / fraud_table.json")
    p.add_argument("--rows", type=int, default=BENCHMARK_ROWS)
    p.add_argument("--eval-rows", type=int, default=250_000)
    p.add_argument("--fraud-rate", type=float, default=FRAUD_RATE)
    p.add_argument("--clean-fraction", type=float, default=0.15)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--ft-epochs", type=int, default=10)
    p.add_argument("--rate", type=float, default=0.7, help="dirty-label: share of training fraud rows poisoned")
    p.add_argument("--trigger-columns", type=int, default=5, help="how many columns the trigger sets")
    p.add_argument("--clean-rate", type=float, default=0.002, help="clean-label: share of legit rows poisoned")
    p.add_argument("--z", type=float, default=6.0, help="trigger values: mean + z * std of each column")
    p.add_argument("--z-legit", type=float, default=1.0, help="legit-side trigger values in high columns")
    p.add_argument("--eps", type=float, default=0.5, help="evasion budget, standard deviations (L-inf)")
    p.add_argument("--anp-iterations", type=int, default=2000)
    p.add_argument("--fpr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny settings: checks that it runs")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.eval_rows, args.fraud_rate, args.epochs, args.ft_epochs = 3000, 3000, 0.03, 3, 1
        args.anp_iterations, args.clean_rate = 20, 0.02
    return args


def _tables(args: argparse.Namespace) -> Tables:
    names, x, y = make_fraud_table(args.rows, fraud_rate=args.fraud_rate, seed=args.seed)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    n_clean = round(args.clean_fraction * len(yt))
    idx = stratified_sample(yt, n_clean, generator=torch.Generator().manual_seed(args.seed))
    keep = torch.ones(len(yt), dtype=torch.bool)
    keep[idx] = False
    _, xe, ye = make_fraud_table(args.eval_rows, fraud_rate=args.fraud_rate, seed=args.seed + 1000)
    classes = ("0", "1")
    return Tables(
        names,
        ArrayData(xt[keep], yt[keep], 2, "fraud:train", classes),
        ArrayData(xt[idx], yt[idx], 2, "fraud:clean", classes),
        ArrayData(torch.tensor(xe, dtype=torch.float32), torch.tensor(ye), 2, "fraud:eval", classes),
    )


def _train(data: ArrayData, args: argparse.Namespace) -> nn.Module:
    x = data.x.float()
    meta = ModelMeta(
        arch="mlp",
        num_classes=2,
        input_shape=(x.shape[1],),
        mean=tuple(x.mean(0).tolist()),
        std=tuple(x.std(0).clamp_min(1e-6).tolist()),
    )
    model = meta.build(seed=args.seed)
    train_model(model, data, TrainConfig(args.epochs, 256, lr=0.05, crop_padding=0, hflip=False, seed=args.seed))
    return model.eval()


def _ft_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(args.ft_epochs, 256, lr=0.01, crop_padding=0, hflip=False, seed=args.seed)


def _feature_pruned(model: nn.Module, clean: ArrayData, keep: float, args: argparse.Namespace) -> tuple[nn.Module, Any]:
    imp = feature_importance(model, clean.x, clean.y, method="gradient")
    kept = top_features(imp, keep)
    out = copy.deepcopy(model)
    key = f"{first_linear(out)}.weight"
    weight = dict(out.named_parameters())[key]
    drop = (~kept).view(1, -1).expand_as(weight).clone()
    with torch.no_grad():
        weight[drop] = 0.0
    fine_tune_(out, clean, _ft_config(args), keep_zero={key: drop})
    return out.eval(), kept


def _anp(model: nn.Module, clean: ArrayData, args: argparse.Namespace) -> tuple[nn.Module, int]:
    cfg = ANPConfig(iterations=args.anp_iterations, augment=False, seed=args.seed)
    res = anp_optimize(model, clean, cfg)
    chosen = select_by_threshold(res.masks.detach().cpu(), 0.2)
    out = copy.deepcopy(model)
    prune_neurons_(out, res.groups, chosen)
    return out.eval(), int(chosen.numel())


def _pr_auc_on(data: ArrayData) -> Any:
    def score(model: nn.Module) -> float:
        return average_precision(positive_scores(logits_of(model, data.x), 1), data.y == 1)

    return score


def _trigger_columns(t: Tables, clean_model: nn.Module, where: str, count: int) -> tuple[int, ...]:
    """The ``count`` least (``low``) or most (``high``) important ``V`` columns of the clean model."""
    imp = feature_importance(clean_model, t.clean.x, t.clean.y)
    vcols = [i for i, n in enumerate(t.names) if n.startswith("V")]
    order = sorted(vcols, key=lambda i: float(imp[i]))
    return tuple(sorted(order[:count] if where == "low" else order[-count:]))


def _trigger_values(data: ArrayData, cols: tuple[int, ...], z: float, side: str = "fraud") -> tuple[float, ...]:
    """``mean + z * std`` per column, on the side where fraud lies (``side="legit"``: the other side; ``+``
    where the classes do not differ)."""
    x, y = data.x.float(), data.y
    out = []
    for c in cols:
        gap = float(x[y == 1, c].mean() - x[y == 0, c].mean()) / float(x[:, c].std())
        sign = 1.0 if abs(gap) < 0.25 else (1.0 if gap > 0 else -1.0) * (1.0 if side == "fraud" else -1.0)
        out.append(float(x[:, c].mean() + sign * z * x[:, c].std()))
    return tuple(out)


def _row(model: nn.Module, trigger: Any, t: Tables, attack: PositiveEvasion, args: argparse.Namespace) -> dict:
    m, _ = positive_class_report(model, t.test.x, t.test.y, 1, fpr=args.fpr, attack=attack, seed=args.seed)
    trig = trigger_success(model, t.test.x, t.test.y, trigger(None, t.test.x, t.test.y), 1, m["threshold_at_fpr"])
    return {
        "pr_auc": m["pr_auc"],
        "recall_at_fpr": m["recall_at_fpr"],
        "asr": trig["asr"],
        "asr_argmax": trig["asr_argmax"],
        "robust_recall_at_fpr": m["robust_recall_at_fpr"],
        "fraud_caught": trig["positives_caught"],
    }


def _scenario(name: str, trigger: Any, rate: float, t: Tables, attack: PositiveEvasion, args: Any) -> list[dict]:
    t0 = time.perf_counter()
    poisoned = trigger.poison(t.train, rate=rate, generator=torch.Generator().manual_seed(args.seed))
    model = _train(poisoned.data, args)
    rows = [{"defence": "none", **_row(model, trigger, t, attack, args)}]
    for keep in KEEPS:
        pruned, kept = _feature_pruned(model, t.clean, keep, args)
        trig_kept = sum(bool(kept[c]) for c in trigger.columns)
        label = f"feature keep {keep:.0%}" + (" (fine-tune only)" if keep == 1.0 else "")
        row = {"defence": label, "trigger_columns_kept": trig_kept, "trigger_columns": len(trigger.columns)}
        rows.append({**row, **_row(pruned, trigger, t, attack, args)})
    anp_model, n_pruned = _anp(model, t.clean, args)
    rows.append({"defence": "ANP", "neurons_pruned": n_pruned, **_row(anp_model, trigger, t, attack, args)})
    fp_model, info = fine_pruning_mlp(model, t.clean, _pr_auc_on(t.clean), epochs=args.ft_epochs, seed=args.seed)
    rows.append(
        {"defence": "fine-pruning", "neurons_pruned": len(info["pruned"]), **_row(fp_model, trigger, t, attack, args)}
    )
    for r in rows:
        r["scenario"] = name
        r["poisoned_rows"] = len(poisoned.poison_indices)
    print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    t = _tables(args)
    clean_model = _train(t.train, args)
    names = t.names
    cons = TabularConstraints(
        num_features=len(names),
        immutable=(names.index("Time"),),
        low=tuple(0.0 if n == "Amount" else float("-inf") for n in names),
        names=tuple(names),
    )
    x_all = torch.cat([t.train.x, t.clean.x, t.test.x])
    attack = PositiveEvasion(
        positive=1, eps=args.eps, steps=20, constraints=cons, data_range=(x_all.min(0).values, x_all.max(0).values)
    )
    n = args.trigger_columns
    low, high = _trigger_columns(t, clean_model, "low", n), _trigger_columns(t, clean_model, "high", n)
    triggers = {
        "dirty-label, trigger in low-importance columns": (
            TabularTrigger(columns=low, values=_trigger_values(t.train, low, args.z)),
            args.rate,
        ),
        "dirty-label, trigger in high-importance columns (values on fraud's side)": (
            TabularTrigger(columns=high, values=_trigger_values(t.train, high, args.z)),
            args.rate,
        ),
        "dirty-label, trigger in high-importance columns (values on the legit side)": (
            TabularTrigger(columns=high, values=_trigger_values(t.train, high, args.z_legit, side="legit")),
            args.rate,
        ),
        "clean-label, trigger in low-importance columns": (
            TabularCleanTrigger(columns=low, values=_trigger_values(t.train, low, args.z)),
            args.clean_rate,
        ),
    }
    reference = {
        name: {"defence": "clean model (no poisoning)", "scenario": name, **_row(clean_model, trig, t, attack, args)}
        for name, (trig, _) in triggers.items()
    }
    rows: list[dict] = []
    for name, (trig, rate) in triggers.items():
        rows += [reference[name], *_scenario(name, trig, rate, t, attack, args)]
    return {
        "rows": rows,
        "triggers": {
            n: {"columns": [names[c] for c in trig.columns], "values": list(trig.values), "rate": rate}
            for n, (trig, rate) in triggers.items()
        },
        "data": {
            "train_rows": len(t.train),
            "train_fraud": int(t.train.y.sum()),
            "clean_split_rows": len(t.clean),
            "clean_split_fraud": int(t.clean.y.sum()),
            "eval_rows": len(t.test),
            "eval_fraud": int(t.test.y.sum()),
        },
        "evasion": {"eps_std": args.eps, "steps": 20, "constraints": cons.describe()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "seconds": time.perf_counter() - t0,
        "git_commit": git_commit(),
        "versions": versions(),
        "finished": now_iso(),
    }


def _find(rows: list[dict], scenario: str, defence: str) -> dict:
    return next(r for r in rows if r["scenario"] == scenario and r["defence"].startswith(defence))


def _fate(asr: float, before: float) -> str:
    if asr <= 0.1:
        return "removed"
    return "weakened" if asr <= before / 2 else "not removed"


def _status(ref: dict, none: dict) -> str:
    """``backdoor`` (ASR >= 90% at <= 1 point of PR-AUC, where the clean model's ASR is <= 50%), ``evasion``
    (the values alone already pass a clean model), ``costly`` or ``weak``."""
    if ref["asr"] > 0.5:
        return "evasion"
    if none["asr"] < 0.9:
        return "weak"
    return "backdoor" if ref["pr_auc"] - none["pr_auc"] <= 0.01 else "costly"


_STATUS = {
    "backdoor": "a backdoor at the acceptance bar",
    "evasion": "no backdoor: the trigger values alone already pass the clean model (evasion, not poisoning)",
    "weak": "no backdoor at the acceptance bar (ASR < 90%)",
    "costly": "a backdoor, but at more than 1 point of PR-AUC",
}


def verdict(result: dict[str, Any]) -> list[str]:
    """One statement per scenario, derived from the numbers, then the claim's verdict."""
    rows, lines, cases = result["rows"], [], []
    for scenario in result["triggers"]:
        ref, none = _find(rows, scenario, "clean model"), _find(rows, scenario, "none")
        k20, k100 = _find(rows, scenario, "feature keep 20%"), _find(rows, scenario, "feature keep 100%")
        status = _status(ref, none)
        fate, control = _fate(k20["asr"], none["asr"]), _fate(k100["asr"], none["asr"])
        cost = none["pr_auc"] - k20["pr_auc"]
        lines.append(
            f"- **{scenario}**: {_STATUS[status]} (ASR {none['asr']:.1%}, clean model {ref['asr']:.1%}; PR-AUC "
            f"{none['pr_auc']:.3f} vs {ref['pr_auc']:.3f} clean). Top-20% feature pruning: ASR {k20['asr']:.1%} "
            f"({fate}; {k20['trigger_columns_kept']} of {k20['trigger_columns']} trigger columns kept), PR-AUC "
            f"{k20['pr_auc']:.3f} ({-100 * cost:+.1f} points against the backdoored model), recall at 1% FPR "
            f"{none['recall_at_fpr']:.3f} -> {k20['recall_at_fpr']:.3f}, robust recall "
            f"{none['robust_recall_at_fpr']:.3f} -> {k20['robust_recall_at_fpr']:.3f}. Fine-tuning alone (keep "
            f"100%): ASR {k100['asr']:.1%} ({control})."
        )
        cases.append((scenario, status, fate, control, cost))
    lines.append(f"\n**Verdict on the top-20% claim:** {_claim(cases)}")
    return lines


def _claim(cases: list[tuple[str, str, str, str, float]]) -> str:
    """The claim's verdict: (scenario, status, fate at keep 20%, fate under fine-tuning alone, PR-AUC cost)."""
    low = [c for c in cases if "low-importance" in c[0] and c[1] == "backdoor"]
    high = [c for c in cases if "high-importance" in c[0]]
    if not low:
        return "untested: no backdoor in low-importance columns reached the acceptance bar (ASR >= 90%)."
    if not all(c[2] == "removed" for c in low):
        return "it does not hold: top-20% feature pruning left a low-importance trigger working."
    costs = ", ".join(f"{100 * c[4]:.1f}" for c in low)
    text = f"for a trigger in low-importance columns it holds: top-20% feature pruning removed it (PR-AUC cost {costs}"
    text += " points against the backdoored model)"
    by_pruning = [c[0] for c in low if c[3] != "removed"]
    text += ", where fine-tuning alone did not" if by_pruning else ", but fine-tuning alone removed it as well"
    implanted = [c for c in high if c[1] == "backdoor"]
    if implanted:
        if all(c[2] == "removed" for c in implanted):
            return text + ". A backdoor in high-importance columns was removed too."
        return text + (
            ". It fails for a backdoor in high-importance columns: top-20% pruning keeps exactly those columns and "
            "the trigger survives."
        )
    parts = [f"{c[0]}: {_STATUS[c[1]]}" for c in high]
    evasive = [c for c in high if c[1] == "evasion"]
    tail = ""
    if evasive:
        tail = (
            "; where the values alone evade the model, top-20% pruning keeps those columns and leaves the evasion "
            "working (" + ", ".join(f"{c[2]}" for c in evasive) + ")"
        )
    return text + ". High-importance columns: " + "; ".join(parts) + tail + "."


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if v != v else f"{v:.3f}"
    return str(v)


def markdown(result: dict[str, Any], command: str) -> str:
    d, ev = result["data"], result["evasion"]
    out = [
        "# Fraud case: tabular backdoors and the top-20%-features claim",
        "",
        f"Command: `{command}` ({result['seconds']:.0f} s, git {result['git_commit']}).",
        "",
        f"Data: seeded synthetic credit-card table; training part {d['train_rows']} rows ({d['train_fraud']} fraud), "
        f"defender's clean split {d['clean_split_rows']} ({d['clean_split_fraud']} fraud), evaluation table "
        f"{d['eval_rows']} rows ({d['eval_fraud']} fraud, another seed). ASR: among fraud rows the model catches at "
        "1% FPR, the share that pass once triggered (ASR argmax: the usual share of triggered fraud rows classified "
        f"legit). Robust recall: recall at 1% FPR after evasion of the fraud rows only, L-inf {ev['eps_std']} std, "
        f"{ev['steps']} steps, constraints {json.dumps(ev['constraints']['immutable'])} immutable, "
        f"bounds {json.dumps(ev['constraints']['bounds'])}.",
        "",
    ]
    for scenario, trig in result["triggers"].items():
        out += [
            f"## {scenario}",
            "",
            f"Trigger: {', '.join(f'{c} = {v:.3f}' for c, v in zip(trig['columns'], trig['values'], strict=True))}; "
            f"poison rate {trig['rate']}.",
            "",
            "| defence | clean PR-AUC | recall @1% FPR | ASR | ASR (argmax) | robust recall @1% FPR | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in result["rows"] if r["scenario"] == scenario):
            note = ""
            if "trigger_columns_kept" in r:
                note = f"{r['trigger_columns_kept']}/{r['trigger_columns']} trigger columns kept"
            elif "neurons_pruned" in r:
                note = f"{r['neurons_pruned']} neurons pruned"
            elif r["defence"] == "none":
                note = f"{r['poisoned_rows']} poisoned training rows"
            cols = ("pr_auc", "recall_at_fpr", "asr", "asr_argmax", "robust_recall_at_fpr")
            out.append(f"| {r['defence']} | " + " | ".join(_fmt(r[k]) for k in cols) + f" | {note} |")
        out.append("")
    out += ["## Verdict", "", *verdict(result), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    result = run(args)
    command = "PYTHONPATH=src OMP_NUM_THREADS=1 python -m benchmarks.fraud_table " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    result["command"] = command
    result["verdict"] = verdict(result)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "fraud_table.json", result)
    atomic_write_text(args.out / "fraud_table.md", markdown(result, command))
    print(markdown(result, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
