"""The ANP reproduction table: one backdoored model per attack, every defence on the same clean split.

    python benchmarks/anp_table.py --json                                   # the full table (hours on a CPU)
    python benchmarks/anp_table.py --attacks sig,blend --defenses anp --seeds 1 --json
    python benchmarks/anp_table.py --quick --out-md runs/anp_table.md        # a smoke run

Models are trained once and cached under --cache, keyed by the hash of their training config; each defence's
result is kept there too (`rows/`), keyed by the model, the defence and everything it depends on (a recipe's
full config), so a rerun or a resumed run computes only the missing rows. Each model and each row is a unit of
`pruneguard.sweeps` (`--executor local`: one after the other in this process; `--executor ray`: Ray tasks of
--threads CPUs (and one GPU with a CUDA --device) each, on a local Ray or the cluster at --ray-address). The clean
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
import json
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pruneguard.config import PurifyConfig, TrainRunConfig
from pruneguard.defenses import DEFENSES, FinePruningConfig, FTConfig, NADConfig, defend
from pruneguard.errors import ConfigError
from pruneguard.evaluation import evaluate_accuracy, evaluate_asr
from pruneguard.recipes import RECIPES, Recipe, apply_overrides, get_recipe
from pruneguard.sweeps import EXECUTORS, SweepStats, Unit, config_hash, result_path, run_units
from pruneguard.utils.allocator import tune_allocator
from pruneguard.utils.device import DEVICE_ACCEPTED, check_device_name, resolve_device
from pruneguard.utils.io import atomic_write_json, atomic_write_text
from pruneguard.workflows.common import draw_clean_split, load_for_defense, make_trigger, on_device, trigger_set
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
    return list(dict.fromkeys([*ALL_DEFENSES, *DEFENSES.names(), *RECIPES.names(), *VARIANTS]))


def _train_config(attack: str | None, seed: int, args: argparse.Namespace) -> dict[str, Any]:
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
    return cfg


def train_unit(attack: str | None, seed: int, args: argparse.Namespace) -> Unit:
    """The unit that trains the model for ``attack`` (None: a clean model) into the cache, keyed by its training
    config; its result (the training report) is the folder's ``result.json``."""
    cfg = _train_config(attack, seed, args)
    folder = Path(args.cache) / f"{attack or 'clean'}-s{seed}-{config_hash(cfg)}"
    train_cfg = {k: v for k, v in cfg.items() if k != "attack_revision"}
    return Unit(
        folder.name,
        cfg,
        train_model_into,
        (str(folder), train_cfg, args.data_dir, _device(args)),
        path=folder / "result.json",
        num_cpus=_threads(args),
        num_gpus=unit_gpus(_device(args)),
        reuse=lambda _: (folder / MODEL_NAME).is_file(),
    )


def train_model_into(folder: str, train_cfg: dict[str, Any], data_dir: Path | None, device: str) -> dict[str, Any]:
    """Train one model into ``folder`` (resuming its checkpoint there); returns the training report."""
    logger.info("training %s into %s", train_cfg["attack"] or "clean", folder)
    run = TrainRunConfig(out=Path(folder), data_dir=data_dir, resume=True, device=device, **train_cfg)
    report, _ = train_job(run)
    return report


def trained_model(attack: str | None, seed: int, args: argparse.Namespace) -> Path:
    """Train (or reuse from the cache) the model for ``attack`` (None: a clean model), in this process."""
    unit = train_unit(attack, seed, args)
    run_units([unit])
    return Path(args.cache) / unit.name / MODEL_NAME


def _threads(args: argparse.Namespace) -> int:
    return int(getattr(args, "threads", 1))


def _device(args: argparse.Namespace) -> str:
    return str(getattr(args, "device", "cpu"))


def unit_gpus(device: str) -> float:
    """The GPUs a unit on ``device`` reserves: one for CUDA (``auto`` where this machine has CUDA), else none."""
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return 1.0
    return 0.0


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
    # the default with a smooth warp reversed in the suspect step, unlearned where a warp decided the evidence
    "warp_auto": ("default", lambda args: ["suspect.warp=true", "repair.trigger=auto"]),
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
    loaded = dataclasses.replace(loaded, model=on_device(loaded.model, resolve_device(_device(args))))
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
            device=_device(args),
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


def defense_unit(
    defense: str, model_path: Path, attack: str, seed: int, fraction: float, args: argparse.Namespace
) -> Unit:
    """``run_defense`` as a unit, its result kept in ``--cache/rows`` under the hash of everything it depends on
    (:func:`row_key`). ``--fresh-rows`` recomputes the kept ones."""
    key = row_key(defense, model_path, fraction, args)
    name = f"{model_path.parent.name}-{defense}-{fraction}"
    return Unit(
        name,
        key,
        run_defense,
        (defense, model_path, attack, seed, fraction, args),
        path=result_path(Path(args.cache) / "rows", name, key),
        num_cpus=_threads(args),
        num_gpus=unit_gpus(_device(args)),
        reuse=lambda _: not args.fresh_rows,
    )


def cached_defense(
    defense: str, model_path: Path, attack: str, seed: int, fraction: float, args: argparse.Namespace
) -> dict[str, Any]:
    """One row in this process: :func:`defense_unit`'s kept result, or computed and kept."""
    return run_units([defense_unit(defense, model_path, attack, seed, fraction, args)])[0]


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
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CPUs) of each unit")
    add_executor_options(p)
    p.add_argument("--cache", default="runs/anp_table")
    p.add_argument("--quick", action="store_true", help="1 epoch, 200 ANP iterations, 2 fine-tune and repair epochs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out-md", type=Path, default=None, help="write the markdown table here (atomically)")
    return p


def add_executor_options(p: argparse.ArgumentParser, *, device: bool = True) -> None:
    """--executor, --ray-address and (with ``device``) --device: how and where a sweep's units run (shared by
    the sweeps)."""
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="run the units here, or as Ray tasks")
    p.add_argument(
        "--ray-address",
        default=None,
        help="with --executor ray: an existing cluster (HOST:6379 or auto); none: a local Ray on this machine",
    )
    if device:
        p.add_argument("--device", default="cpu", help=f"where each unit's models run: {DEVICE_ACCEPTED}")


def check_executor_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A bad --device or --ray-address exits 2 with one line (a device is checked here unless the units run on a
    cluster, whose nodes may have devices this machine lacks)."""
    try:
        if hasattr(args, "device"):
            check_device_name(args.device, param="--device")
            if args.ray_address is None:
                resolve_device(args.device, param="--device")
        if args.ray_address is not None and args.executor != "ray":
            raise ConfigError(f"--ray-address={args.ray_address!r} needs --executor ray")
    except ConfigError as exc:
        p.error(str(exc))


def sweep(units: list[Unit], args: argparse.Namespace, stats: SweepStats) -> list[dict[str, Any]]:
    """``run_units`` with the sweep's --executor and --ray-address."""
    return run_units(units, executor=args.executor, address=args.ray_address, stats=stats)


def table_rows(
    attacks: list[str], args: argparse.Namespace, stats: SweepStats
) -> tuple[list[dict[str, Any]], dict[int, float], dict[tuple[str, int], float]]:
    """Every row of the table (in the order attack, clean fraction, defence, per seed), the clean models'
    accuracy and each attack's floor (the clean model's ASR; both only for the markdown table). Three rounds of
    units: the models, the defences, then those that start from anp's masks (so that they find anp's state)."""
    seeds = range(args.seeds)
    with_clean = not args.json or args.out_md
    trains = [train_unit(a, s, args) for s in seeds for a in ([None] if with_clean else []) + attacks]
    reports = dict(zip([u.name for u in trains], sweep(trains, args, stats), strict=True))
    model = {(a, s): Path(args.cache) / train_unit(a, s, args).name / MODEL_NAME for s in seeds for a in attacks}
    defenses = [d for d in args.defenses.split(",") if d]
    fractions = [(args.clean_fraction, defenses)]
    small = [d for d in args.small_defenses.split(",") if d in defenses]
    if args.small_fraction and small:
        fractions.append((args.small_fraction, small))
    cells = [(a, s, f, d) for s in seeds for a in attacks for f, defs in fractions for d in defs]
    results: dict[tuple[str, int, float, str], dict[str, Any]] = {}
    for later in (False, True):
        todo = [c for c in cells if (c[3] in ON_ANP_MASKS) == later]
        units = [defense_unit(d, model[(a, s)], a, s, f, args) for a, s, f, d in todo]
        results.update(zip(todo, sweep(units, args, stats), strict=True))
    rows = [
        {"attack": a, "defense": d, "clean_fraction": f, "seed": s, **results[(a, s, f, d)]} for a, s, f, d in cells
    ]
    clean_acc: dict[int, float] = {}
    floors: dict[tuple[str, int], float] = {}
    if with_clean:
        for s in seeds:
            unit = train_unit(None, s, args)
            clean_acc[s] = reports[unit.name]["test"]["accuracy"]
            clean = load_for_defense(Path(args.cache) / unit.name / MODEL_NAME, data_dir=args.data_dir)
            for a in attacks:
                floors[(a, s)] = clean_floor(clean, model[(a, s)], a, args)
    return rows, clean_acc, floors


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_executor_options(parser, args)
    if args.quick:
        args.epochs, args.anp_iterations, args.ft_epochs = 1, 200, 2
    torch.set_num_threads(args.threads)
    tune_allocator()  # ${PRUNEGUARD_MALLOC}: tuned (default) or default
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    stats = SweepStats()
    rows, clean_acc, floors = table_rows([a for a in args.attacks.split(",") if a], args, stats)
    logger.info("units computed: %d, reused from --cache: %d", len(stats.computed), len(stats.reused))
    if args.out_md:
        atomic_write_text(args.out_md, markdown(rows, clean_acc, args, floors))
    if args.json:
        print(
            json.dumps(
                {
                    "rows": rows,
                    "clean_model_accuracy": clean_acc,
                    "clean_model_asr": [{"attack": a, "seed": sd, "asr": v} for (a, sd), v in floors.items()],
                    "computed": {"units": len(stats.computed), "reused": len(stats.reused)},
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
