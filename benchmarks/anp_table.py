"""The ANP reproduction table: one backdoored model per attack, every defence on the same clean split.

    python benchmarks/anp_table.py --json                                   # the full table (hours on a CPU)
    python benchmarks/anp_table.py --attacks sig,blend --defenses anp --seeds 1 --json
    python benchmarks/anp_table.py --quick --out-md runs/anp_table.md        # a smoke run

Models are trained once and cached under --cache, keyed by the hash of their training config; each defence's
result is kept there too (`rows/`), keyed by the model, the defence and everything it depends on (a recipe's
full config), so the table can be computed by several processes (`--attacks`) and assembled by a last run that
finds every row; within one run, --jobs processes (default: one per core) take one (attack, seed) each. The clean
split (--clean-fraction of the training split, drawn from the 10% held out from model training) is the same for
every defence.

Defences: `ft`, `fine_pruning` and `nad` (the paper's baselines, --ft-epochs on the clean split); every recipe
shipped with pruneguard by its name (`paper`: ANP as published; `default`: pruneguard's default recipe), run
through `pruneguard.workflows.purify` exactly as `purify --recipe NAME` runs it; `anp` is `paper`'s row under
the paper's column name; `anp_ft` is `paper` followed by a fine-tune on the clean split (--ft-epochs, pruning at
--anp-ft-threshold), a benchmark variant. ASR is measured on the test set for the table only: no defence sees it
(nor the true target label).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from pruneguard.config import PurifyConfig, TrainRunConfig
from pruneguard.defenses import DEFENSES, FinePruningConfig, FTConfig, NADConfig, defend
from pruneguard.evaluation import evaluate_accuracy, evaluate_asr
from pruneguard.recipes import RECIPES, Recipe, apply_overrides, get_recipe
from pruneguard.utils.allocator import tune_allocator
from pruneguard.utils.io import atomic_write_json, atomic_write_text
from pruneguard.workflows.common import draw_clean_split, load_for_defense, make_trigger, trigger_set
from pruneguard.workflows.purify import purify
from pruneguard.workflows.train import MODEL_NAME, train_job

logger = logging.getLogger("anp_table")

PAPER_ATTACKS = ("badnets", "blend", "input_aware", "label_consistent", "sig", "trojan")
# Clean-label attacks poison images of the target class only; their rate is a share of that class.
CLEAN_LABEL = ("sig", "label_consistent")
ALL_DEFENSES = ("none", "ft", "fine_pruning", "nad", "anp", "anp_ft", "default")
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "digits": "digits"}
# Defences that prune with anp's masks: run after anp, they start from its saved state.
ON_ANP_MASKS = ("anp_ft",)
# Bumped when an attack's training recipe changes, so that cached models of the old recipe are not reused (the
# key of an attack without an entry stays as it was). input_aware 2: the victim is trained jointly with the
# trigger generator (IAB's threat model) instead of on a static poisoned set.
ATTACK_REVISIONS = {"input_aware": 2}
# The ANP paper's headline (ResNet-18, CIFAR-10, 1% clean data): its Table 1 averaged over five runs.
PAPER_SUMMARY = "ASR < 1% on 5 of 6 attacks, mean ACC drop 1.47 points, mean ASR reduction 96.44%, 241.5 s (GPU)"


def all_defenses() -> list[str]:
    """Every defence the table can run: the baselines, the variants and every shipped recipe."""
    return list(dict.fromkeys([*ALL_DEFENSES, *DEFENSES.names(), *RECIPES.names()]))


def _key(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def trained_model(attack: str | None, seed: int, args: argparse.Namespace) -> Path:
    """Train (or reuse from the cache) the model for ``attack`` (None: a clean model)."""
    cfg = {
        "dataset": args.dataset,
        "arch": args.arch,
        "attack": attack,
        "poison_rate": args.clean_label_rate if attack in CLEAN_LABEL else args.poison_rate,
        "target_label": args.target_label,
        "epochs": args.epochs,
        "seed": seed,
        "width": args.width,
    }
    if attack in ATTACK_REVISIONS:
        cfg["attack_revision"] = ATTACK_REVISIONS[attack]
    params = json.loads(args.attack_params).get(attack or "", {})
    if params:  # only when set, so that the keys of models trained with the defaults stay as they were
        cfg["attack_params"] = params
    folder = Path(args.cache) / f"{attack or 'clean'}-s{seed}-{_key(cfg)}"
    model_path = folder / MODEL_NAME
    if model_path.is_file():
        return model_path
    logger.info("training %s (seed %d) into %s", attack or "clean", seed, folder)
    train_cfg = {k: v for k, v in cfg.items() if k != "attack_revision"}
    run = TrainRunConfig(out=folder, data_dir=args.data_dir, resume=True, **train_cfg)
    report, _ = train_job(run)
    atomic_write_json(folder / "result.json", report)
    return model_path


# benchmark variants of the shipped recipes: (recipe, --set items given the options)
VARIANTS: dict[str, tuple[str, Any]] = {
    "anp": ("paper", lambda args: []),
    "anp_ft": (
        "paper",
        lambda args: [
            f"select.threshold={args.anp_ft_threshold}",
            "repair.method=finetune",
            f"repair.epochs={args.ft_epochs}",
        ],
    ),
}
# The ANP paper's baselines fine-tune for --ft-epochs (their row key holds it); the other registered defences run
# their paper settings scaled to our data (their row key holds the config), shortened by --quick as below.
FT_EPOCH_CONFIGS: dict[str, Any] = {
    "ft": lambda e: FTConfig(epochs=e),
    "fine_pruning": lambda e: FinePruningConfig(epochs=e),
    "nad": lambda e: NADConfig(epochs=e, teacher_epochs=e),
}
QUICK_SETTINGS: dict[str, dict[str, Any]] = {"ft_sam": {"epochs": 2}, "sau": {"rounds": 2}, "i_bau": {"rounds": 1}}


def defense_config(defense: str, args: argparse.Namespace) -> Any:
    """The config a registered (non-recipe) defence runs with in the table."""
    if defense in FT_EPOCH_CONFIGS:
        return FT_EPOCH_CONFIGS[defense](args.ft_epochs)
    config = DEFENSES.get(defense).config()
    return dataclasses.replace(config, **QUICK_SETTINGS.get(defense, {})) if args.quick else config


def defense_recipe(defense: str, args: argparse.Namespace) -> dict[str, Any]:
    """The full recipe (as a dict) a recipe defence runs: a shipped recipe by name or a variant of one, with the
    --anp-iterations/--anp-eps options applied to `paper`-based defences and --quick's shorter settings."""
    name, sets = VARIANTS.get(defense, (defense, lambda a: []))
    items = list(sets(args))
    if name == "paper":
        items += [f"anp.iterations={args.anp_iterations}", f"anp.eps={args.anp_eps}", f"anp.augment={args.anp_augment}"]
    elif args.quick:
        items += ["anp.iterations=200", "repair.epochs=2"]
    data = apply_overrides({"recipe": get_recipe(name).to_dict()}, [f"recipe.{i}" for i in items])
    return dict(Recipe(**data["recipe"]).to_dict())


def is_recipe_defense(defense: str) -> bool:
    return defense in VARIANTS or defense in RECIPES


def run_defense(
    defense: str, model_path: Path, attack: str, seed: int, fraction: float, args: argparse.Namespace
) -> dict[str, Any]:
    loaded = load_for_defense(model_path, data_dir=args.data_dir)
    trig = make_trigger(attack, loaded.meta, args.target_label, model_path)
    triggered = trigger_set(trig, loaded.test)
    clean, _ = draw_clean_split(loaded, clean_fraction=fraction, clean_samples=None, seed=seed)
    t0, extra = time.perf_counter(), {}
    out = Path(args.cache) / "defended" / f"{model_path.parent.name}-{defense}-{fraction}"
    if defense == "none":
        model = loaded.model
    elif defense in DEFENSES:
        model, _ = defend(defense, loaded.model, clean, defense_config(defense, args), seed=seed)
    elif is_recipe_defense(defense):
        # anp_ft learns the very masks of anp (same ANP config): it starts from anp's saved state, and its row's
        # time is its own steps only (the table adds anp's, see ``charged_seconds``)
        shared = out.parent / f"{model_path.parent.name}-anp-{fraction}" / "anp_state.pt"
        if defense in ON_ANP_MASKS and shared.is_file() and not (out / "anp_state.pt").is_file():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared, out / "anp_state.pt")
        cfg = PurifyConfig(
            model=model_path,
            out=out,
            data_dir=args.data_dir,
            clean_fraction=fraction,
            seed=seed,
            eval_attack=attack,
            target_label=args.target_label,
            recipe=defense_recipe(defense, args),
        )
        report, model, _ = purify(cfg, loaded=copy.copy(loaded), resume=True)
        atomic_write_json(out / "report.json", report)  # the purify report, for audit (the row keeps the figures)
        extra = {
            "target_class": report["suspect"]["target"],
            "verdict": report["verdict"]["status"],
            "validation_drop": report.get("validation_drop"),
        }
    else:
        raise ValueError(f"unknown defence {defense!r}; accepted: {', '.join(all_defenses())}")
    seconds = time.perf_counter() - t0 if defense != "none" else 0.0
    row = {
        "accuracy": evaluate_accuracy(model, loaded.test),
        "asr": evaluate_asr(model, triggered, trig.target_label),
        "seconds": seconds,
    }
    row.update({k: v for k, v in extra.items() if v is not None})
    return row


def row_key(defense: str, model_path: Path, fraction: float, args: argparse.Namespace) -> dict[str, Any]:
    """Everything a row depends on besides the model file's content (its folder name holds the training hash)."""
    key: dict[str, Any] = {
        "model": model_path.parent.name,
        "defense": defense,
        "fraction": fraction,
        "target_label": args.target_label,
        "data_dir": str(args.data_dir),
    }
    if defense in FT_EPOCH_CONFIGS:
        key["ft_epochs"] = args.ft_epochs
    elif defense in DEFENSES:
        key["config"] = dataclasses.asdict(defense_config(defense, args))
    if is_recipe_defense(defense):
        key["recipe"] = defense_recipe(defense, args)
    return key


def cached_defense(
    defense: str, model_path: Path, attack: str, seed: int, fraction: float, args: argparse.Namespace
) -> dict[str, Any]:
    """``run_defense``, its result kept in ``--cache/rows`` under a key of everything it depends on
    (:func:`row_key`): a run split over processes is assembled by a later run that finds each row there.
    ``--fresh-rows`` recomputes them."""
    key = _key(row_key(defense, model_path, fraction, args))
    path = Path(args.cache) / "rows" / f"{model_path.parent.name}-{defense}-{fraction}-{key}.json"
    if path.is_file() and not args.fresh_rows:
        logger.info("reusing %s", path)
        row: dict[str, Any] = json.loads(path.read_text())
        return row
    res = run_defense(defense, model_path, attack, seed, fraction, args)
    atomic_write_json(path, res)
    return res


def clean_floor(clean: Any, model_path: Path, attack: str, args: argparse.Namespace) -> float:
    """The ASR metric of the *clean* model (``load_for_defense``'s result) on ``attack``'s triggered test set: the
    floor a purified model can reach (non-target images a model without a backdoor sends to the target class)."""
    attacked = load_for_defense(model_path, data_dir=args.data_dir)
    trig = make_trigger(attack, attacked.meta, args.target_label, model_path)
    return evaluate_asr(clean.model, trigger_set(trig, clean.test), args.target_label)


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def attack_bars(
    rows: list[dict[str, Any]], clean_acc: dict[int, float], floors: dict[tuple[str, int], float]
) -> list[str]:
    """The issue's bar per attack, from the No-defence rows: ASR >= 90% (80% clean-label), ACC within 2 points;
    and the clean model's ASR on the same triggered images (the floor)."""
    lines = [
        "| attack | ACC / ASR, no defence | ASR bar | ACC drop vs clean model | met | clean model's ASR (floor) |",
        "|---|---|---|---|---|---|",
    ]
    clean = _mean(list(clean_acc.values()))
    for a in dict.fromkeys(r["attack"] for r in rows):
        rs = [r for r in rows if r["attack"] == a and r["defense"] == "none"]
        if not rs:
            continue
        acc, asr = _mean([r["accuracy"] for r in rs]), _mean([r["asr"] for r in rs])
        bar = 0.8 if a in CLEAN_LABEL else 0.9
        drop = clean - acc
        met = asr >= bar and drop <= 0.02
        floor = _mean([v for (fa, _), v in floors.items() if fa == a])
        lines.append(
            f"| {a} | {acc * 100:.2f} / {asr * 100:.2f} | {bar:.0%} | {drop * 100:.2f} | {'yes' if met else 'no'} "
            f"| {floor * 100:.2f} |"
        )
    return lines


def charged_seconds(row: dict[str, Any], rows: list[dict[str, Any]]) -> float:
    """A row's time, plus anp's mask learning for the defences that start from anp's masks."""
    if row["defense"] not in ON_ANP_MASKS:
        return float(row["seconds"])
    same = ("attack", "seed", "clean_fraction")
    anp = [r for r in rows if r["defense"] == "anp" and all(r[k] == row[k] for k in same)]
    return float(row["seconds"]) + (float(anp[0]["seconds"]) if anp else 0.0)  # no anp row: it learned its own


def markdown(
    rows: list[dict[str, Any]],
    clean_acc: dict[int, float],
    args: argparse.Namespace,
    floors: dict[tuple[str, int], float] | None = None,
) -> str:
    floors = floors or {}
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    defenses = [d for d in all_defenses() if any(r["defense"] == d for r in rows)]
    fractions = sorted({r["clean_fraction"] for r in rows}, reverse=True)
    lines = [
        f"{DATASET_NAMES.get(args.dataset, args.dataset)} ({args.arch}"
        + (f" width {args.width}" if args.width != 1.0 else "")
        + f", {args.epochs} epochs, poison rate "
        f"{args.poison_rate} of non-target images "
        f"(clean-label: {args.clean_label_rate} of the target class), target {args.target_label}); ACC / ASR in %, "
        f"mean over seeds {list(range(args.seeds))}"
        + (f"; clean model ACC {_mean(list(clean_acc.values())) * 100:.2f}" if clean_acc else "")
    ]
    if clean_acc:
        lines += ["", *attack_bars(rows, clean_acc, floors)]
    base = {(r["attack"], r["seed"]): r for r in rows if r["defense"] == "none"}
    for frac in fractions:
        sel = [r for r in rows if r["clean_fraction"] == frac]
        # the no-defence column is the same at every clean fraction (no defence sees the clean data)
        cols = ["none"] + [d for d in defenses if d != "none" and any(r["defense"] == d for r in sel)]
        lines += [
            "",
            f"Clean data: {frac * 100:g}% of the training split",
            "",
            "| attack | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for a in attacks:
            cells = []
            for d in cols:
                rs = [r for r in (rows if d == "none" else sel) if r["attack"] == a and r["defense"] == d]
                cells.append(
                    f"{_mean([r['accuracy'] for r in rs]) * 100:.2f} / {_mean([r['asr'] for r in rs]) * 100:.2f}"
                    if rs
                    else "–"
                )
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        paper = [a for a in attacks if a in PAPER_ATTACKS]
        lines += [
            "",
            f"Over the paper's attacks present ({', '.join(paper)}):",
            "",
            "| defence | mean ACC drop (points) | mean ASR (%) | ASR <= 1% | ASR <= clean model's | mean time (s) |",
            "|---|---|---|---|---|---|",
        ]
        for d in cols:
            rs = [r for r in sel if r["defense"] == d and r["attack"] in paper and (r["attack"], r["seed"]) in base]
            if not rs or d == "none":
                continue
            drop = _mean([base[(r["attack"], r["seed"])]["accuracy"] - r["accuracy"] for r in rs])
            at_floor = [r["asr"] <= floors[(r["attack"], r["seed"])] for r in rs if (r["attack"], r["seed"]) in floors]
            lines.append(
                f"| {d} | {drop * 100:.2f} | {_mean([r['asr'] for r in rs]) * 100:.2f} | "
                f"{sum(r['asr'] <= 0.01 for r in rs)}/{len(rs)} | "
                + (f"{sum(at_floor)}/{len(at_floor)}" if at_floor else "–")
                + f" | {_mean([charged_seconds(r, rows) for r in rs]):.0f} |"
            )
    lines += ["", f"Paper (ANP, ResNet-18 on CIFAR-10, 1% clean data): {PAPER_SUMMARY}.", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The table's options; other benchmarks parse their own arguments with it to get the table's defaults."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attacks", default=",".join(PAPER_ATTACKS))
    p.add_argument("--defenses", default=",".join(ALL_DEFENSES))
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--clean-fraction", type=float, default=0.01)
    p.add_argument("--small-fraction", type=float, default=0.001, help="ANP is also run with this much data")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--arch", default="small_cnn")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--poison-rate", type=float, default=0.05, help="share of non-target images (dirty-label)")
    p.add_argument("--clean-label-rate", type=float, default=0.8, help="share of target-class images (SIG, LC)")
    p.add_argument("--target-label", type=int, default=0)
    p.add_argument(
        "--attack-params",
        default="{}",
        help='per attack, as JSON: \'{"sig": {"delta": 0.157}}\' (train --attack-params)',
    )
    p.add_argument("--anp-iterations", type=int, default=2000)
    p.add_argument("--anp-eps", type=float, default=0.4)
    p.add_argument("--anp-augment", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--anp-ft-threshold", type=float, default=0.2)
    p.add_argument("--ft-epochs", type=int, default=10)
    p.add_argument("--small-defenses", default="anp", help="the defences also run with --small-fraction clean data")
    p.add_argument("--fresh-rows", action="store_true", help="recompute rows kept in --cache/rows")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each process")
    p.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="processes, one (attack, seed) each: its training and defences in order (0: cores / --threads)",
    )
    p.add_argument("--cache", default="runs/anp_table")
    p.add_argument("--quick", action="store_true", help="1 epoch, 200 ANP iterations, 2 fine-tune and repair epochs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out-md", type=Path, default=None, help="write the markdown table here (atomically)")
    return p


def attack_rows(
    attack: str, seed: int, args: argparse.Namespace, clean_path: Path | None
) -> tuple[list[dict[str, Any]], float | None]:
    """One unit of the table: train (or reuse) ``attack``'s model and run every defence on it, in order (``anp``
    before the defences that start from its masks). Returns the rows and, with ``clean_path``, the clean model's
    ASR on this attack's triggered test set."""
    model_path = trained_model(attack, seed, args)
    floor = None
    if clean_path is not None:
        floor = clean_floor(load_for_defense(clean_path, data_dir=args.data_dir), model_path, attack, args)
    defenses = [d for d in args.defenses.split(",") if d]
    fractions = [(args.clean_fraction, defenses)]
    small = [d for d in args.small_defenses.split(",") if d in defenses]
    if args.small_fraction and small:
        fractions.append((args.small_fraction, small))
    rows = []
    for frac, defs in fractions:
        for d in defs:
            res = cached_defense(d, model_path, attack, seed, frac, args)
            rows.append({"attack": attack, "defense": d, "clean_fraction": frac, "seed": seed, **res})
            logger.info("%s", rows[-1])
    return rows, floor


def _setup(threads: int) -> None:
    """Per process (the main one and each worker): torch threads, allocator, logging."""
    torch.set_num_threads(threads)
    tune_allocator()  # ${PRUNEGUARD_MALLOC}: tuned (default) or default
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")


def _unit(args: argparse.Namespace, unit: tuple[str, int, Path | None]) -> tuple[list[dict[str, Any]], float | None]:
    attack, seed, clean_path = unit
    return attack_rows(attack, seed, args, clean_path)


def run_units(
    units: list[tuple[str, int, Path | None]], args: argparse.Namespace, workers: int
) -> list[tuple[list[dict[str, Any]], float | None]]:
    """``attack_rows`` for every (attack, seed, clean model), in that order: in this process when ``workers`` is 1,
    else in up to that many worker processes (spawned, ``--threads`` each). Units share nothing but the cache,
    where each writes its own model folder and rows, so the results are the serial run's."""
    work = functools.partial(_unit, args)
    workers = min(workers, len(units))
    if workers <= 1:
        return [work(u) for u in units]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_setup, initargs=(args.threads,)) as pool:
        return list(pool.map(work, units))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.epochs, args.anp_iterations, args.ft_epochs = 1, 200, 2
    if args.jobs < 0:
        raise SystemExit(f"--jobs={args.jobs} is not accepted; accepted: an integer >= 1, or 0 (one per core)")
    _setup(args.threads)
    attacks = [a for a in args.attacks.split(",") if a]
    clean_acc: dict[int, float] = {}
    floors: dict[tuple[str, int], float] = {}
    units: list[tuple[str, int, Path | None]] = []
    for seed in range(args.seeds):
        clean_path = None
        if not args.json or args.out_md:  # the clean model: its accuracy and each attack's floor (the table's)
            clean_path = trained_model(None, seed, args)
            clean_acc[seed] = json.loads((clean_path.parent / "result.json").read_text())["test"]["accuracy"]
        units += [(attack, seed, clean_path) for attack in attacks]
    workers = args.jobs or max(1, (os.cpu_count() or 1) // max(1, args.threads))
    rows: list[dict[str, Any]] = []
    for (attack, seed, _), (unit_rows, floor) in zip(units, run_units(units, args, workers), strict=True):
        rows += unit_rows
        if floor is not None:
            floors[(attack, seed)] = floor
    if args.out_md:
        atomic_write_text(args.out_md, markdown(rows, clean_acc, args, floors))
    if args.json:
        print(
            json.dumps(
                {
                    "rows": rows,
                    "clean_model_accuracy": clean_acc,
                    "clean_model_asr": [{"attack": a, "seed": sd, "asr": v} for (a, sd), v in floors.items()],
                    "config": vars(args),
                },
                indent=2,
                default=str,
            )
        )
    else:
        print(markdown(rows, clean_acc, args, floors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
