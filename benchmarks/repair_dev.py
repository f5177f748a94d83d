"""Recipe variants that differ after the suspect step, compared on development models of the zoo.

    python benchmarks/repair_dev.py --models dev-02,eval5-03 --variants default,round6 --out-json runs/repair_dev.json

For each model (``benchmarks/zoo.py``'s specs and model cache; development splits only, every split outside
``zoo.EVAL_SPLITS``: choices are made there), the suspect step runs once and is kept in
``--cache/repair_dev/<model>/finding.json``; ANP's masks are kept in the same folder (its resumable state), so
every variant that shares the ANP settings reuses them. Each variant is the default recipe after the variant's
``--set`` items (``VARIANTS``) and runs through
``pruneguard.workflows.purify``. A row records the validation and test accuracy and the ASR of the model's own
trigger after pruning and after the repair and guard; the ASR is measured for this table only. Where the guard
judges each unlearning round (``repair.guard`` ``round`` or ``backoff``), the row's ``per_round`` holds the test
accuracy and ASR of the model each judgement left: a round's work does not depend on how many rounds follow, so
the ``rounds8`` variant's first four entries are the default's four rounds and one run shows what each further
round adds.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402

import pruneguard.workflows.purify as purify_workflow  # noqa: E402
from pruneguard.config import PurifyConfig  # noqa: E402
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr  # noqa: E402
from pruneguard.recipes import Recipe, get_recipe  # noqa: E402
from pruneguard.recipes.overrides import apply_overrides  # noqa: E402
from pruneguard.scan.finder import SELF_JUDGED, SuspectFinding, relative_evidence  # noqa: E402
from pruneguard.sweeps import config_hash  # noqa: E402
from pruneguard.utils.io import atomic_write, atomic_write_json, atomic_write_text  # noqa: E402
from pruneguard.workflows.common import (  # noqa: E402
    draw_clean_split,
    load_for_defense,
    make_trigger,
    trigger_set,
)
from pruneguard.workflows.purify import purify, split_clean, suspect_step  # noqa: E402

logger = logging.getLogger("repair_dev")

_TWO_ROUNDS_END_GUARD = ["repair.rounds=2", "repair.guard=end"]
VARIANTS: dict[str, list[str]] = {
    # the default recipe of bc1298a (the evaluation zoo's version): no tie order, no retries, no divergence cap
    "v1": ["select.tiebreak=false", "repair.retries=0", "select.max_kl=null", *_TWO_ROUNDS_END_GUARD],
    "tiebreak": ["repair.retries=0", "select.max_kl=null", *_TWO_ROUNDS_END_GUARD],
    "v2": ["select.max_kl=null", *_TWO_ROUNDS_END_GUARD],  # ties in ANP's order, two retries: ccf49b5's default
    "v3": _TWO_ROUNDS_END_GUARD,  # v2, the pruning capped at 0.02 nats of divergence: 12c928d's default
    "kl04": ["select.max_kl=0.04", *_TWO_ROUNDS_END_GUARD],
    "rounds3": ["repair.rounds=3", "repair.guard=end"],  # a third round, the guard judging the repair's end
    # the guard judging each unlearning round against the model the round started from; an undone round ends it
    "round": ["repair.rounds=2", "repair.guard=round"],
    "round3": ["repair.rounds=3", "repair.guard=round"],
    "v4": ["repair.guard=round"],  # four rounds, each judged by the guard: fa82b0a's default
    "round6": ["repair.rounds=6", "repair.guard=round"],
    # an undone round run again at a third, then a ninth of the learning rate (the default since v4)
    "backoff": ["repair.guard=backoff"],
    "default": [],
    # the suspected class's probability left whole in the teacher's outputs on other classes' images
    "nosuppress": ["repair.suppress=0"],
    # a smooth warp reversed too: in the suspect step (model and reference) and in the repair's unlearning
    "warp": ["suspect.warp=true", "repair.trigger=all"],
    # the warp reversed in the suspect step; unlearned only where a warp decided the evidence
    "warp_auto": ["suspect.warp=true", "repair.trigger=auto"],
    # eight rounds instead of four (each judged and backed off as in the default): how far more rounds go
    "rounds8": ["repair.rounds=8"],
    # ANP's masks learned but nothing pruned: the repair from the original model, the guard's budget all its own
    "noprune": ["select.rule=count", "select.count=0"],
    # where nothing of the repair fits after the pruning, the repair again from the original model
    "fallback": ["repair.unpruned_fallback=true"],
}


def variant_recipe(name: str) -> Recipe:
    data = apply_overrides({"recipe": get_recipe("default").to_dict()}, [f"recipe.{s}" for s in VARIANTS[name]])
    return Recipe(**{**data["recipe"], "name": f"default+{name}"})


def same_steps(kept: dict[str, Any] | None, recipe: Recipe) -> bool:
    """Whether a kept row's recipe computes what ``recipe`` does: equal after validation by today's schema (a
    field added since takes its default), its name and description aside."""
    if kept is None:
        return False
    try:
        old = Recipe(**kept).to_dict()
    except ValueError:
        return False
    new = recipe.to_dict()
    return all(old[k] == new[k] for k in new if k not in ("name", "description"))


def cached_finding(path: Path, model: Any, use: Any, recipe: Recipe, meta: Any, seed: int) -> SuspectFinding:
    """The suspect step's finding, run once per model: its record in ``path``, the reference model the vote trained
    beside it (``reference.pt``, its weights), so that a later variant's recheck does not train it again."""
    weights = path.with_name("reference.pt")
    if path.is_file():
        reference = None
        if weights.is_file():
            reference = meta.build(seed=seed)
            reference.load_state_dict(torch.load(weights, weights_only=True))
            reference.eval()
        return SuspectFinding(**json.loads(path.read_text()), reference=reference)
    finding = suspect_step(recipe, model, use, meta, seed)
    if finding.reference is not None:
        with atomic_write(weights, "wb") as fh:
            torch.save(finding.reference.state_dict(), fh)
    record = {f.name: getattr(finding, f.name) for f in dataclasses.fields(finding) if f.name != "reference"}
    atomic_write_json(path, record)
    return finding


def evidence_figures(finding: SuspectFinding, recipe: Recipe) -> dict[str, Any] | None:
    """The relative evidence of a finding, computed again from its record by today's rule
    (:func:`~pruneguard.scan.finder.relative_evidence`; a warp judged against the model's own classes, reference
    warp sizes of an earlier record left out), beside the measure of the stamps alone: class, kind, measure and
    whether it is within the recipe's cut. None for a finding without the relative rule's record."""
    vote = finding.record.get("vote")
    if not vote or vote.get("rule") != "relative":
        return None
    model = {k: v["mask_l1"] for k, v in finding.record["reversal"]["kinds"].items()}
    reference = {
        k: [d[str(c)] for c in range(len(d))] for k, d in vote["reference"]["sizes"].items() if k not in SELF_JUDGED
    }
    cut = recipe.suspect.relative_cut
    out: dict[str, Any] = {}
    for name, sizes in (("rule", model), ("stamps", {k: model[k] for k in reference})):
        measure, cls, kind, _ = relative_evidence(sizes, reference)
        out[name] = {"measure": measure, "class": cls, "kind": kind, "evidence": measure <= cut}
    return out


def finding_row(spec: dict[str, Any], variant: str, finding: SuspectFinding, recipe: Recipe) -> dict[str, Any]:
    """A variant's suspect step on one model, without the steps after it: the class, the evidence by today's rule
    and by the stamps alone (:func:`evidence_figures`), and the scan's time."""
    vote = finding.record.get("vote") or {}
    scans = [finding.record.get(k) or {} for k in ("sensitivity", "reversal")]
    return {
        "model": spec["id"],
        "arch": spec["arch"],
        "trigger": spec["trigger"] if spec["backdoored"] else None,
        "true_target": spec["target_label"] if spec["backdoored"] else None,
        "variant": variant,
        "suspect": finding.target,
        "flagged": finding.evidence,
        "evidence": evidence_figures(finding, recipe),
        "seconds": sum(s.get("seconds", 0.0) for s in scans) + vote.get("reference", {}).get("seconds", 0.0),
    }


def findings_markdown(rows: list[dict[str, Any]]) -> str:
    """One line per model and variant: the finding's class and evidence, by today's rule and by the stamps."""
    lines = [
        "| model | arch | trigger (target) | variant | flagged: class | evidence: class, kind, measure "
        "| the stamps alone | scan seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ev = r["evidence"] or {}
        said = {k: f"{v['class']}, {v['kind']}, {v['measure']:.3f}" for k, v in ev.items()}
        lines.append(
            f"| {r['model']} | {r['arch']} | {r['trigger']} ({r['true_target']}) | {r['variant']} "
            f"| {'yes' if r['flagged'] else 'no'}: {r['suspect']} | {said.get('rule', '–')} "
            f"| {said.get('stamps', '–')} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


@contextmanager
def per_round_figures(figures: Callable[[Any], dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Within the block, every judgement of the per-round guard in ``purify`` appends ``figures(model)`` of the
    model it left (the round kept whole, scaled back or undone) to the yielded list, in the order of the report's
    ``guard.rounds``. Measured for this table only: the guard itself sees the validation part alone."""
    seen: list[dict[str, Any]] = []
    judge = purify_workflow.weaken_to_fit

    def observed(model: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        out = judge(model, *args, **kwargs)
        seen.append({"scale": out["scale"], **figures(model)})
        return out

    purify_workflow.weaken_to_fit = observed  # type: ignore[assignment]
    try:
        yield seen
    finally:
        purify_workflow.weaken_to_fit = judge


def test_figures(loaded: Any, spec: dict[str, Any], model_path: Path) -> Callable[[Any], dict[str, Any]]:
    """Test accuracy, and the ASR of the model's own trigger where it has one, of a model."""
    triggered, target = None, None
    if spec["backdoored"]:
        attack = make_trigger(spec["trigger"], loaded.meta, spec["target_label"], model_path)
        triggered, target = trigger_set(attack, loaded.test), attack.target_label

    def figures(model: Any) -> dict[str, Any]:
        out = {"accuracy": evaluate_accuracy(model, loaded.test), "asr": None}
        if triggered is not None:
            out["asr"] = evaluate_asr(model, triggered, target)
        return out

    return figures


def per_round_rows(judged: list[dict[str, Any]], seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The guard's judgements (the report's ``guard.rounds``, the last attempt's) joined with the figures measured
    after each: the last ``len(judged)`` of ``seen`` (an earlier attempt's judgements come before them)."""
    if len(seen) < len(judged):
        raise ValueError(f"{len(seen)} measurements for {len(judged)} judged rounds")
    seen = seen[len(seen) - len(judged) :]
    return [
        {"round": j["round"], "lr": j["lr"], "scale": j["scale"], "accuracy": m["accuracy"], "asr": m["asr"]}
        for j, m in zip(judged, seen, strict=True)
    ]


def run_folder(spec: dict[str, Any], args: argparse.Namespace) -> Path:
    """Where a model's finding, ANP state and variant rows are kept (``--cache/repair_dev/MODEL-FRACTION``)."""
    return Path(args.cache) / "repair_dev" / f"{zoo.train_unit(spec, args).name}-{args.clean_fraction}"


def run_model(spec: dict[str, Any], variants: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    model_path = zoo.trained_model(spec, args)
    loaded = load_for_defense(model_path, data_dir=args.data_dir)
    seed = spec["seed"]
    clean, _ = draw_clean_split(loaded, clean_fraction=args.clean_fraction, clean_samples=None, seed=seed)
    base = get_recipe("default")
    use, _ = split_clean(clean, base.validation_fraction, seed)
    folder = run_folder(spec, args)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in variants:
        out_file = folder / f"{name}.json"
        recipe = variant_recipe(name)
        # one finding per suspect step: the default's in finding.json, another's named by its settings' hash
        own = recipe.suspect.model_dump()
        key = "" if own == base.suspect.model_dump() else "-" + config_hash(own)[:12]
        finding = cached_finding(folder / f"finding{key}.json", loaded.model, use, recipe, loaded.meta, seed)
        if args.findings_only:
            rows.append(finding_row(spec, name, finding, recipe))
            continue
        if out_file.is_file() and (args.kept or same_steps(json.loads(out_file.read_text()).get("recipe"), recipe)):
            rows.append({**json.loads(out_file.read_text()), "evidence": evidence_figures(finding, recipe)})
            continue
        cfg = PurifyConfig(
            model=model_path,
            out=folder,
            clean_fraction=args.clean_fraction,
            seed=seed,
            recipe=recipe.to_dict(),
            eval_attack=spec["trigger"] if spec["backdoored"] else None,
            target_label=spec["target_label"] if spec["backdoored"] else None,
            data_dir=args.data_dir,
        )
        with per_round_figures(test_figures(loaded, spec, model_path)) as seen:
            report, _, _ = purify(cfg, loaded=copy.copy(loaded), resume=True, finding=finding)
        judged = (report.get("guard") or {}).get("rounds")
        pruned = report.get("after_pruning") or report["after"]
        row = {
            "model": spec["id"],
            "arch": spec["arch"],
            "trigger": spec["trigger"] if spec["backdoored"] else None,
            "variant": name,
            "recipe": recipe.to_dict(),
            "verdict": report["verdict"]["status"],
            "suspect": finding.target,
            "true_target": spec["target_label"] if spec["backdoored"] else None,
            "pruned": report.get("pruned_neurons"),
            "before": report["before"],
            "after_pruning": pruned,
            "after": report["after"],
            "guard": report.get("guard"),
            "per_round": per_round_rows(judged, seen) if judged is not None else None,
            "seconds": report["seconds"],
        }
        atomic_write_json(out_file, row)
        rows.append({**row, "evidence": evidence_figures(finding, recipe)})
        logger.info(
            "%s %s: val %.3f -> %.3f, test %.4f -> %.4f, asr %s -> %s",
            spec["id"],
            name,
            report["before"]["validation_accuracy"],
            report["after"]["validation_accuracy"],
            report["before"]["accuracy"],
            report["after"]["accuracy"],
            report["before"]["asr"],
            report["after"]["asr"],
        )
    return rows


def after_round(row: dict[str, Any], k: int) -> dict[str, Any]:
    """A row's test figures as a repair of ``k`` rounds would have left them: after the last judgement of round
    ``k`` or earlier (a repair that ended before ``k`` stays where it ended), after pruning if none."""
    done = [j for j in row["per_round"] if j["round"] <= k]
    return done[-1] if done else row["after_pruning"]


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: on backdoored models the share with ASR <= 1% and the mean ASR after, the mean and worst test
    accuracy drop; on clean models the mean and worst drop. Where every backdoored row of a variant has its
    ``per_round`` figures, ``by_round`` gives the same for a repair stopped after each round."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        bd = [r for r in mine if r["trigger"] is not None]
        cl = [r for r in mine if r["trigger"] is None]
        drops_bd = [r["before"]["accuracy"] - r["after"]["accuracy"] for r in bd]
        drops_cl = [r["before"]["accuracy"] - r["after"]["accuracy"] for r in cl]
        out[name] = {
            "backdoored": len(bd),
            "asr_le_1pct": sum(r["after"]["asr"] <= 0.01 for r in bd),
            "mean_asr_before": sum(r["before"]["asr"] for r in bd) / len(bd) if bd else None,
            "mean_asr_after": sum(r["after"]["asr"] for r in bd) / len(bd) if bd else None,
            "mean_drop_backdoored": sum(drops_bd) / len(bd) if bd else None,
            "worst_drop_backdoored": max(drops_bd, default=None),
            "clean": len(cl),
            "mean_drop_clean": sum(drops_cl) / len(cl) if cl else None,
            "worst_drop_clean": max(drops_cl, default=None),
        }
        if bd and all(r.get("per_round") for r in bd):
            last = max(j["round"] for r in bd for j in r["per_round"])
            by_round = {}
            for k in range(1, last + 1):
                at = [after_round(r, k) for r in bd]
                drops = [r["before"]["accuracy"] - a["accuracy"] for r, a in zip(bd, at, strict=True)]
                by_round[k] = {
                    "asr_le_1pct": sum(a["asr"] <= 0.01 for a in at),
                    "asr_le_2pct": sum(a["asr"] <= 0.02 for a in at),
                    "mean_asr_after": sum(a["asr"] for a in at) / len(at),
                    "mean_drop_backdoored": sum(drops) / len(drops),
                    "worst_drop_backdoored": max(drops),
                }
            out[name]["by_round"] = by_round
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.2f}"

    lines = [
        "| variant | backdoored: ASR <= 1% | mean ASR before → after (%) | mean / worst drop (points) "
        "| clean: mean / worst drop |",
        "|---|---|---|---|---|",
    ]
    for name, f in summary(rows).items():
        lines.append(
            f"| {name} | {f['asr_le_1pct']} of {f['backdoored']} | {pct(f['mean_asr_before'])} → "
            f"{pct(f['mean_asr_after'])} | {pct(f['mean_drop_backdoored'])} / {pct(f['worst_drop_backdoored'])} "
            f"| {pct(f['mean_drop_clean'])} / {pct(f['worst_drop_clean'])} ({f['clean']} models) |"
        )
    lines += [
        "",
        "| model | arch | trigger (target) | variant | evidence: class, kind, measure (stamps alone) | pruned "
        "| ASR before → after (%) | test acc drop (points) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        asr = f"{pct(r['before']['asr'])} → {pct(r['after']['asr'])}" if r["trigger"] else "clean"
        drop = pct(r["before"]["accuracy"] - r["after"]["accuracy"])
        ev = r.get("evidence")
        said = (
            f"{ev['rule']['class']}, {ev['rule']['kind']}, {ev['rule']['measure']:.3f} "
            f"({ev['stamps']['class']}, {ev['stamps']['kind']}, {ev['stamps']['measure']:.3f})"
            if ev
            else "–"
        )
        lines.append(
            f"| {r['model']} | {r['arch']} | {r['trigger']} ({r.get('true_target')}) | {r['variant']} | {said} "
            f"| {r['pruned']} | {asr} | {drop} |"
        )
    staged = [r for r in rows if r.get("per_round") and r["trigger"]]
    for name, f in summary(rows).items():
        if "by_round" not in f:
            continue
        lines += [
            "",
            f"`{name}` stopped after each round (backdoored models):",
            "",
            "| rounds | ASR <= 1% | ASR <= 2% | mean ASR after (%) | mean / worst drop (points) |",
            "|---|---|---|---|---|",
        ]
        for k, g in f["by_round"].items():
            lines.append(
                f"| {k} | {g['asr_le_1pct']} of {f['backdoored']} | {g['asr_le_2pct']} of {f['backdoored']} "
                f"| {pct(g['mean_asr_after'])} | {pct(g['mean_drop_backdoored'])} / {pct(g['worst_drop_backdoored'])} |"
            )
    if staged:
        lines += [
            "",
            "After each judged round (lr, scale the guard kept): ASR (%) / test accuracy drop (points)",
            "",
            "| model | variant | rounds |",
            "|---|---|---|",
        ]
        for r in staged:
            said = "; ".join(
                f"{j['round']} ({j['lr']:.3g}, {j['scale']:g}): {pct(j['asr'])} / "
                f"{pct(r['before']['accuracy'] - j['accuracy'])}"
                for j in r["per_round"]
            )
            lines.append(f"| {r['model']} | {r['variant']} | {said} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="comma-separated development model ids (dev-NN, eval5-NN, ...)")
    p.add_argument("--variants", default="default", help=f"comma-separated: {', '.join(VARIANTS)}")
    p.add_argument(
        "--findings-only", action="store_true", help="run each variant's suspect step only (no pruning or repair)"
    )
    p.add_argument(
        "--kept",
        action="store_true",
        help="tabulate the rows kept in --cache as they are (each row holds the recipe it ran); run nothing",
    )
    zoo.add_script_options(p)
    args = p.parse_args(argv)
    specs = {s["id"]: s for split in zoo.development_splits() for s in zoo.zoo_specs(split)}
    ids = [m for m in args.models.split(",") if m]
    variants = [v for v in args.variants.split(",") if v]
    for bad in [m for m in ids if m not in specs]:
        p.error(f"--models: {bad!r} is not accepted; accepted: model ids of {', '.join(zoo.development_splits())}")
    for bad in [v for v in variants if v not in VARIANTS]:
        p.error(f"--variants: {bad!r} is not accepted; accepted: {', '.join(VARIANTS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    # zoo.trained_model reads these fields of its namespace
    args.quick, args.device, args.executor = False, "cpu", "local"
    for spec, name in [(specs[m], v) for m in ids for v in variants] if args.kept else []:
        if not (run_folder(spec, args) / f"{name}.json").is_file():
            p.error(f"--kept: no row of {spec['id']} for the variant {name} in {run_folder(spec, args)}")
    rows = [row for m in ids for row in run_model(specs[m], variants, args)]
    text = findings_markdown(rows) if args.findings_only else markdown(rows)
    if args.out_json:
        atomic_write_json(
            args.out_json, {"rows": rows} if args.findings_only else {"summary": summary(rows), "rows": rows}
        )
    if args.out_md:
        atomic_write_text(args.out_md, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
