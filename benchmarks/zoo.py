"""The evaluation zoo: many backdoored and clean models drawn from seeds, every defence on each of them.

    python benchmarks/zoo.py --split dev --out-json runs/dev_zoo.json            # tune recipes on this split only
    python benchmarks/zoo.py --split eval --out-json benchmarks/results/eval_zoo.json   # once per recipe version
    python benchmarks/zoo.py --split eval --clean-fraction 0.001                 # the 60-image case
    python benchmarks/zoo.py --split eval --quick                                # digits, 4 small models (smoke)
    python benchmarks/zoo.py --split eval --list                                 # the specs only, nothing trained
    python benchmarks/zoo.py --split eval2 --out-json benchmarks/results/eval2_zoo.json  # the fresh evaluation split

Each model is a spec drawn from its own seed (model i of the dev split: seed 10000 + i, of the eval split:
20000 + i, so the splits never share a model): an architecture (with its width), a trigger family and its drawn
parameters (placement, shape, pattern), a poison rate in [1%, 10%] of the training set and a target class; every
fourth model (i = 0, 4, ...) is clean (no poisoning; its drawn trigger only measures the ASR floor). Architectures
and trigger families are dealt in an order shuffled by the split's seed, so each appears about equally often.
Fashion-MNIST in the full mode; digits with small widths in --quick.

Models are trained once into ``--cache/models`` (folder named by the hash of the spec's training fields); each
(model, defence, clean fraction) row is kept in ``--cache/rows`` under the hash of everything it depends on (the
key of ``anp_table.row_key``, with the recipe's full config after ``--set``), so an interrupted run resumes and a
rerun recomputes nothing (models and rows are units of ``pruneguard.sweeps``: ``--executor local|ray``, see
anp_table); ``--part i/n`` splits the models over processes that share the cache. Defences are the
names ``anp_table`` accepts (baselines, variants, every shipped recipe); a recipe runs through
``pruneguard.workflows.purify`` as ``purify --recipe NAME --set ...`` runs it. Test accuracy and ASR are measured
here for the table only: no defence sees the test set, the trigger or the target class.

The cache is not committed; the results files are. ``--with-rows FILE`` puts the rows of a committed results file
beside this run's (e.g. baselines computed today beside the recipe's rows of an earlier run), on the models whose
figures before any defence are the same to the digit here (training is deterministic on one machine): a model
trained differently is refused, not compared. ``--join FILE`` (with ``--join-reports`` for its committed
reports) puts an earlier run's models that this run has no row of into the tables whole: a split run in parts,
over sessions or machines, of one recipe version.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anp_table  # noqa: E402
from evidence_rules import auroc  # noqa: E402

from pruneguard.attacks import ATTACKS  # noqa: E402
from pruneguard.config import PurifyConfig  # noqa: E402
from pruneguard.data.datasets import dataset_info  # noqa: E402
from pruneguard.defenses import DEFENSES, defend  # noqa: E402
from pruneguard.errors import ConfigError  # noqa: E402
from pruneguard.evaluation import evaluate_accuracy, evaluate_asr  # noqa: E402
from pruneguard.recipes import Recipe, apply_overrides  # noqa: E402
from pruneguard.reports.provenance import git_commit, versions  # noqa: E402
from pruneguard.scan.reversal import TRIGGER_KINDS, restrict_kinds  # noqa: E402
from pruneguard.sweeps import SweepStats, Unit, config_hash, result_path, run_units  # noqa: E402
from pruneguard.utils.device import resolve_device  # noqa: E402
from pruneguard.utils.io import atomic_write_json, atomic_write_text  # noqa: E402
from pruneguard.workflows.common import (  # noqa: E402
    draw_clean_split,
    load_for_defense,
    make_trigger,
    on_device,
    trigger_set,
)
from pruneguard.workflows.purify import purify, write_purify_outputs  # noqa: E402
from pruneguard.workflows.train import MODEL_NAME  # noqa: E402

logger = logging.getLogger("zoo")

# Model i of a split draws from SPLIT_SEEDS[split] + i; a split holds fewer than SEED_SPAN models, so the seed
# ranges of the splits are disjoint. "eval2" is a fresh evaluation split, drawn like "eval": "eval" was run once
# (commit bc1298a) and its failures then guided the development work, so the next version is judged on eval2;
# "eval3" is the next fresh one. "dev2" is a second development split: "dev" holds two clean models outside
# PreAct-ResNet-18, too few to place a cut that clean models must stay above. "eval3" was reported on once (the
# evidence rules of 70be354) and is development data since; "dev3" holds clean models only, two per architecture,
# to measure how a clean model's evidence varies with its architecture. "eval4" was reported on once (the recipe
# of 022a656) and is development data since (the class guard's cut was chosen on it); "eval5" was reported on once
# (the recipe of fa82b0a) and is development data since; "eval6" was reported on once (the recipe of 612fe5c) and
# is development data since; "eval7" was reported on once (the recipe of 11adb54, `v6`, and `v7` judged from its
# reports) and is development data since; "eval8" is the next fresh split.
SPLIT_SEEDS = {
    "dev": 10_000,
    "eval": 20_000,
    "eval2": 30_000,
    "dev2": 40_000,
    "eval3": 50_000,
    "dev3": 60_000,
    "eval4": 70_000,
    "eval5": 80_000,
    "eval6": 90_000,
    "eval7": 100_000,
    "eval8": 110_000,
}  # fmt: skip
EVAL_SPLITS = ("eval", "eval2", "eval8")  # reporting splits: recipes by name only, no choice is made on them
SEED_SPAN = 10_000
CLEAN_EVERY = 4  # models 0, 4, 8, ... of a split are clean
CLEAN_EVERY_OF = {"dev3": 1}  # splits with another share of clean models (dev3: every model)
POISON_RATES = (0.01, 0.10)  # share of the training set, drawn uniformly
ZOO_FAMILIES = ("random_patch", "thin_line", "faint_pattern")
MODES: dict[str, dict[str, Any]] = {
    "full": {
        "dataset": "fashion_mnist",
        "epochs": 4,
        "models": {**dict.fromkeys(SPLIT_SEEDS, 28), "dev": 16, "dev2": 24, "dev3": 12},
        "archs": {
            "small_cnn": 1.0,
            "gap_cnn": 1.0,
            "preact_resnet18": 0.25,
            "vgg11_bn": 0.25,
            "plain_cnn": 1.0,
            "gn_cnn": 1.0,
        },  # fmt: skip
        "families": (*anp_table.PAPER_ATTACKS, "wanet", *ZOO_FAMILIES),
        "clean_fraction": 0.01,
        "sets": [],
    },
    "quick": {
        "dataset": "digits",
        "epochs": 25,
        "models": dict.fromkeys(SPLIT_SEEDS, 4),
        "archs": {"small_cnn": 0.5, "gap_cnn": 0.5, "plain_cnn": 0.5, "gn_cnn": 0.5},
        "families": ZOO_FAMILIES,  # one model each: the smoke run covers every new trigger family
        "clean_fraction": 0.08,  # about 100 digits images (1% of digits would be 14)
        # about 20 validation images cannot hold a 2-point limit: the smoke run repairs unguarded to test the steps
        "sets": [
            *("anp.iterations=60", "repair.epochs=1", "repair.rounds=1", "repair.reversal_steps=40"),
            "unguarded_repair=true",
        ],
    },
}
# --quick: a recipe that suspects by vote suspects by the sensitivity scan alone, without the reference check that
# needs the vote (the vote reverses a trigger per class and kind: 25-35 s per digits model). Such a recipe then
# purifies clean models too: --quick's figures test the pipeline, not the recipe.
QUICK_VOTE_SETS = ["suspect.method=sensitivity", "suspect.require_evidence=false"]
# Trigger families whose trigger is fixed by their parameters alone (a clean model's ASR floor is measured with
# one of these: the others need the attacker's training to exist).
_STATELESS = ("badnets", "blend", "sig", "wanet", *ZOO_FAMILIES)


def development_splits() -> list[str]:
    """The splits that choices may be made on: every split but the reporting ones (``EVAL_SPLITS``)."""
    return [split for split in SPLIT_SEEDS if split not in EVAL_SPLITS]


def draw_params(family: str, hw: tuple[int, int], rng: random.Random) -> dict[str, Any]:
    """The trigger parameters of ``family`` drawn for images of size ``hw`` (placement, shape, pattern)."""
    h, w = hw
    small = min(h, w) < 16
    if family == "badnets":
        size = rng.randint(2, 2 if small else 4)
        corner = rng.choice(("top_left", "top_right", "bottom_left", "bottom_right"))
        return {"patch_size": size, "corner": corner, "margin": rng.randint(0, 1 if small else 3)}
    if family == "blend":
        return {"alpha": round(rng.uniform(0.12, 0.25), 3), "pattern_seed": rng.randrange(2**31)}
    if family == "sig":
        return {"delta": round(rng.uniform(15, 40) / 255, 4), "frequency": float(rng.randint(3, 8))}
    if family == "wanet":
        return {"k": rng.choice((3, 4)), "s": round(rng.uniform(0.5, 1.0), 3), "seed": rng.randrange(2**31)}
    if family in ("trojan", "label_consistent"):
        return {"patch_size": rng.randint(2, 3) if small else rng.randint(3, 5), "seed": rng.randrange(2**31)}
    if family == "input_aware":
        return {"seed": rng.randrange(2**31)}
    if family == "random_patch":
        size = rng.randint(2, 3) if small else rng.randint(3, 5)
        return {
            "size": size,
            "pixels": rng.randint(math.ceil(size * size / 2), size * size - 1),  # never the full square
            "row": rng.randint(0, h - size),
            "col": rng.randint(0, w - size),
            "seed": rng.randrange(2**31),
        }
    if family == "thin_line":
        length = rng.randint(max(3, min(h, w) // 3), max(3, min(h, w) // 2 + 1))
        orientation = rng.choice(("horizontal", "vertical", "diagonal", "antidiagonal"))
        if orientation in ("horizontal", "vertical"):
            offset = rng.randint(0, (h if orientation == "horizontal" else w) - 1)
            start = rng.randint(0, (w if orientation == "horizontal" else h) - length)
        else:
            start = rng.randint(0, h - length)
            col = rng.randint(0, w - length)
            offset = col if orientation == "diagonal" else col + length - 1
        return {"length": length, "orientation": orientation, "offset": offset, "start": start,
                "seed": rng.randrange(2**31)}  # fmt: skip
    if family == "faint_pattern":
        return {"alpha": round(rng.uniform(0.04, 0.1), 3), "grain": rng.randint(2, 6), "seed": rng.randrange(2**31)}
    raise ConfigError(
        f"trigger family={family!r} has no parameter draw; accepted: {', '.join(MODES['full']['families'])}"
    )


def _dealt(items: list[str], count: int, rng: random.Random) -> list[str]:
    """``count`` items dealt from repeated copies of ``items``, each copy in an order shuffled by ``rng``."""
    out: list[str] = []
    while len(out) < count:
        deck = list(items)
        rng.shuffle(deck)
        out += deck
    return out[:count]


def zoo_specs(split: str, *, quick: bool = False) -> list[dict[str, Any]]:
    """The split's model specs, a pure function of ``split`` and ``quick``."""
    if split not in SPLIT_SEEDS:
        raise ConfigError(f"--split={split!r} is not accepted; accepted: {', '.join(SPLIT_SEEDS)}")
    mode = MODES["quick" if quick else "full"]
    n = mode["models"][split]
    if n > SEED_SPAN:
        raise ConfigError(f"a split of {n} models would reach the next split's seeds (at most {SEED_SPAN})")
    info = dataset_info(mode["dataset"])
    hw = (int(info.input_shape[-2]), int(info.input_shape[-1]))
    deal = random.Random(SPLIT_SEEDS[split])
    archs = _dealt(list(mode["archs"]), n, deal)
    clean = [i % CLEAN_EVERY_OF.get(split, CLEAN_EVERY) == 0 for i in range(n)]
    families = iter(_dealt(list(mode["families"]), n - sum(clean), deal))
    probes = iter(_dealt([f for f in mode["families"] if f in _STATELESS], sum(clean), deal))
    specs = []
    for i in range(n):
        seed = SPLIT_SEEDS[split] + i
        rng = random.Random(seed)
        family = next(probes) if clean[i] else next(families)
        rate = 0.0 if clean[i] else round(rng.uniform(*POISON_RATES), 4)
        spec: dict[str, Any] = {
            "id": f"{split}-{i:02d}",
            "seed": seed,
            "dataset": mode["dataset"],
            "arch": archs[i],
            "width": mode["archs"][archs[i]],
            "epochs": mode["epochs"],
            "backdoored": not clean[i],
            "trigger": family,
            "params": draw_params(family, hw, rng),
            "target_label": rng.randrange(info.num_classes),
            "poison_rate": rate,
        }
        spec["attack_rate"] = attack_rate(family, rate, info.num_classes) if rate else 0.0
        specs.append(spec)
    return specs


def attack_rate(family: str, rate: float, num_classes: int) -> float:
    """The ``rate`` an attack's ``poison`` takes for ``rate`` of the training set poisoned (classes balanced):
    clean-label attacks draw from the target class (1/num_classes of the data), dirty-label ones from the rest;
    the input-aware attack's rate is its per-batch share of triggered images."""
    if family == "input_aware":
        return rate
    if ATTACKS.get(family).clean_label:
        return min(1.0, round(rate * num_classes, 4))
    return min(1.0, round(rate * num_classes / (num_classes - 1), 4))


def train_unit(spec: dict[str, Any], args: argparse.Namespace) -> Unit:
    """The unit that trains the model of ``spec`` into ``--cache/models`` (folder named by its training fields)."""
    fields = {k: v for k, v in spec.items() if k != "id"}
    if spec["backdoored"] and spec["trigger"] in anp_table.ATTACK_REVISIONS:  # anp_table's attack training revision
        fields["attack_revision"] = anp_table.ATTACK_REVISIONS[spec["trigger"]]
    key = {**fields, "data_dir": str(args.data_dir)}
    folder = Path(args.cache) / "models" / f"{spec['id']}-{config_hash(key)}"
    train_cfg = {
        "dataset": spec["dataset"],
        "arch": spec["arch"],
        "width": spec["width"],
        "attack": spec["trigger"] if spec["backdoored"] else None,
        "attack_params": spec["params"] if spec["backdoored"] else {},
        "poison_rate": spec["attack_rate"] if spec["backdoored"] else 0.05,
        "target_label": spec["target_label"],
        "epochs": spec["epochs"],
        "seed": spec["seed"],
    }
    return Unit(
        folder.name,
        key,
        anp_table.train_model_into,
        (str(folder), train_cfg, args.data_dir, args.device),
        path=folder / "result.json",
        num_cpus=args.threads,
        num_gpus=anp_table.unit_gpus(args.device),
        reuse=lambda _: (folder / MODEL_NAME).is_file(),
    )


def trained_model(spec: dict[str, Any], args: argparse.Namespace) -> Path:
    """Train (or reuse from ``--cache/models``) the model of ``spec``, in this process."""
    unit = train_unit(spec, args)
    run_units([unit])
    return Path(args.cache) / "models" / unit.name / MODEL_NAME


def spec_trigger(spec: dict[str, Any], meta: Any, model_path: Path) -> Any:
    """The model's trigger: as recorded in a backdoored model's file, from the spec's parameters for a clean one."""
    if spec["backdoored"]:
        return make_trigger(spec["trigger"], meta, spec["target_label"], model_path)
    return ATTACKS.create(spec["trigger"], target_label=spec["target_label"], **spec["params"])


def recipe_for(defense: str, args: argparse.Namespace, table_args: argparse.Namespace) -> dict[str, Any]:
    """The full recipe a recipe defence runs: ``anp_table.defense_recipe``, then this run's ``--set`` items."""
    data = {"recipe": anp_table.defense_recipe(defense, table_args)}
    items = list(args.sets)
    if args.quick and data["recipe"]["suspect"]["method"] == "vote":
        items = [*QUICK_VOTE_SETS, *items]
    data = apply_overrides(data, [f"recipe.{item}" for item in items])
    return dict(Recipe(**data["recipe"]).to_dict())


def run_defense(
    spec: dict[str, Any], defense: str, model_path: Path, args: argparse.Namespace, table_args: argparse.Namespace
) -> dict[str, Any]:
    """One (model, defence) unit: the defended model's test accuracy and ASR, its time and the recipe's verdict."""
    loaded = load_for_defense(model_path, data_dir=args.data_dir)
    loaded = dataclasses.replace(loaded, model=on_device(loaded.model, resolve_device(args.device)))
    triggered = trigger_set(spec_trigger(spec, loaded.meta, model_path), loaded.test)
    clean, _ = draw_clean_split(loaded, clean_fraction=args.clean_fraction, clean_samples=None, seed=spec["seed"])
    seed = spec["seed"]
    t0, extra = time.perf_counter(), {}
    if defense == "none":
        model = loaded.model
    elif defense in DEFENSES:  # FT, Fine-Pruning, NAD, FT-SAM, SAU, I-BAU with the table's configs
        model, _ = defend(defense, loaded.model, clean, anp_table.defense_config(defense, table_args), seed=seed)
    elif anp_table.is_recipe_defense(defense):
        out = Path(args.cache) / "defended" / defended_name(model_path.parent.name, defense, args)
        cfg = PurifyConfig(
            model=model_path,
            out=out,
            data_dir=args.data_dir,
            clean_fraction=args.clean_fraction,
            seed=seed,
            recipe=recipe_for(defense, args, table_args),
            device=args.device,
        )
        report, model, meta = purify(cfg, loaded=copy.copy(loaded), resume=True)
        write_purify_outputs(cfg, report, model, meta)  # the purified model and its reports, for audit and reuse
        extra = {
            "verdict": report["verdict"]["status"],
            "suspect": report["suspect"]["target"],
            "pruned": report.get("pruned_neurons"),
            "validation_drop": report.get("validation_drop"),
        }
    else:
        raise ValueError(f"unknown defence {defense!r}; accepted: {', '.join(anp_table.all_defenses())}")
    seconds = time.perf_counter() - t0 if defense != "none" else 0.0
    row = {
        "accuracy": evaluate_accuracy(model, loaded.test),
        "asr": evaluate_asr(model, triggered, spec["target_label"]),
        "seconds": seconds,
        "device": str(next(loaded.model.parameters()).device),
    }
    row.update({k: v for k, v in extra.items() if v is not None})
    return row


def row_key(
    spec: dict[str, Any], defense: str, model_path: Path, args: argparse.Namespace, table_args: argparse.Namespace
) -> dict[str, Any]:
    """Everything a row depends on: ``anp_table.row_key`` (model folder, defence, clean fraction, target, data,
    baseline epochs), the recipe after ``--set``, and the trigger the ASR is measured with."""
    key = anp_table.row_key(defense, model_path, args.clean_fraction, table_args)
    if anp_table.is_recipe_defense(defense):
        key["recipe"] = recipe_for(defense, args, table_args)
    key["trigger"] = {"family": spec["trigger"], "params": spec["params"]}
    return key


def guarded_row(
    spec: dict[str, Any], defense: str, model_path: Path, args: argparse.Namespace, table_args: argparse.Namespace
) -> dict[str, Any]:
    """``run_defense``; a defence that cannot run on a model gives a row with its ``error`` (a result of the zoo,
    kept like the others; ``--retry-failed`` recomputes it)."""
    t0 = time.perf_counter()
    try:
        return run_defense(spec, defense, model_path, args, table_args)
    except Exception as exc:
        if defense == "none":
            raise
        logger.exception("%s on %s failed", defense, spec["id"])
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                "seconds": time.perf_counter() - t0}  # fmt: skip


def row_unit(
    spec: dict[str, Any], defense: str, model_path: Path, args: argparse.Namespace, table_args: argparse.Namespace
) -> Unit:
    """:func:`guarded_row` as a unit, kept in ``--cache/rows`` under the hash of :func:`row_key`."""
    key = row_key(spec, defense, model_path, args, table_args)
    name = f"{model_path.parent.name}-{defense}-{args.clean_fraction}"
    return Unit(
        name,
        key,
        guarded_row,
        (spec, defense, model_path, args, table_args),
        path=result_path(Path(args.cache) / "rows", name, key),
        num_cpus=args.threads,
        num_gpus=anp_table.unit_gpus(args.device),
        reuse=lambda row: "error" not in row or not args.retry_failed,
    )


def cached_row(
    spec: dict[str, Any], defense: str, model_path: Path, args: argparse.Namespace, table_args: argparse.Namespace
) -> dict[str, Any]:
    """One row in this process: :func:`row_unit`'s kept result, or computed and kept."""
    return run_units([row_unit(spec, defense, model_path, args, table_args)])[0]


def zoo_rows(specs: list[dict[str, Any]], args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every (model, defence) row, each holding the figures before and after, and how many models and rows this
    run computed. Two rounds of units on --executor: the models, then every defence on each of them."""
    trained, computed = SweepStats(), SweepStats()
    run = anp_table.sweep
    if args.cached_only:  # read what is kept; a model or row not kept is listed in args.missing, not computed
        kept = [s for s in specs if (Path(args.cache) / "models" / train_unit(s, args).name / MODEL_NAME).is_file()]
        args.missing += [f"{spec['id']} (no model)" for spec in specs if spec not in kept]
        specs = kept
    else:
        run([train_unit(spec, args) for spec in specs], args, trained)
    paths = {spec["id"]: Path(args.cache) / "models" / train_unit(spec, args).name / MODEL_NAME for spec in specs}
    tables = {spec["id"]: table_namespace(spec, args) for spec in specs}
    cells = [(spec, d) for spec in specs for d in dict.fromkeys(["none", *args.defense_list])]
    units = [row_unit(spec, d, paths[spec["id"]], args, tables[spec["id"]]) for spec, d in cells]
    if args.cached_only:
        results = [unit.cached() for unit in units]
    else:
        results = run(units, args, computed)
    found = {(spec["id"], d): row for (spec, d), row in zip(cells, results, strict=True) if row is not None}
    rows = []
    for spec in specs:
        before = found.get((spec["id"], "none"))
        for defense in args.defense_list:
            after = found.get((spec["id"], defense))
            if before is None or after is None:
                args.missing.append(f"{spec['id']} {defense}")
                continue
            extra = {k: v for k, v in after.items() if k not in ("accuracy", "asr", "seconds")}
            rows.append(
                {
                    "model": spec,
                    "defense": defense,
                    "clean_fraction": args.clean_fraction,
                    "accuracy_before": before["accuracy"],
                    "asr_before": before["asr"],
                    "accuracy_after": after.get("accuracy"),
                    "asr_after": after.get("asr"),
                    "seconds": after["seconds"],
                    **extra,
                }
            )
            logger.info("%s %s: %s", spec["id"], defense, {k: v for k, v in rows[-1].items() if k != "model"})
    return rows, {"models": len(trained.computed), "rows": len(computed.computed)}


def table_namespace(spec: dict[str, Any], args: argparse.Namespace) -> argparse.Namespace:
    """anp_table's options for this model: its data, target class and (with --quick) its short settings."""
    argv = ["--cache", str(args.cache), "--target-label", str(spec["target_label"]), "--dataset", spec["dataset"]]
    if args.data_dir is not None:
        argv += ["--data-dir", str(args.data_dir)]
    table_args = anp_table.build_parser().parse_args(argv + (["--quick"] if args.quick else []))
    if args.quick:  # what anp_table's --quick sets besides the recipes
        table_args.epochs, table_args.anp_iterations, table_args.ft_epochs = 1, 200, 2
    return table_args


def _mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def _points(values: list[float]) -> list[float]:
    return [100.0 * v for v in values]


EFFECTIVE_ASR = 0.5  # a backdoored model whose attack took: ASR at least this before any defence


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per defence: models, the backdoored share with ASR <= 1% and <= 2%, mean and worst accuracy drop (points)
    on backdoored and on clean models, mean ASR before and after on backdoored models (points), mean seconds (per
    model, the defence's own wall time); ``*_effective``: the backdoored models whose attack took (ASR before at
    least ``EFFECTIVE_ASR``). A row whose defence failed (``error``) counts in ``failed`` and in no
    figure; the shares are over the backdoored models the defence ran on."""
    out: dict[str, dict[str, Any]] = {}
    for defense in dict.fromkeys(r["defense"] for r in rows):
        failed = [r for r in rows if r["defense"] == defense and "error" in r]
        rs = [r for r in rows if r["defense"] == defense and "error" not in r]
        bad = [r for r in rs if r["model"]["backdoored"]]
        took = [r for r in bad if r["asr_before"] >= EFFECTIVE_ASR]
        good = [r for r in rs if not r["model"]["backdoored"]]
        drop_bad = _points([r["accuracy_before"] - r["accuracy_after"] for r in bad])
        drop_good = _points([r["accuracy_before"] - r["accuracy_after"] for r in good])
        out[defense] = {
            "models": len(rs),
            "failed": len(failed),
            "backdoored": len(bad),
            "clean": len(good),
            "asr_le_1pct": sum(r["asr_after"] <= 0.01 for r in bad) / len(bad) if bad else None,
            "asr_le_2pct": sum(r["asr_after"] <= 0.02 for r in bad) / len(bad) if bad else None,
            "backdoored_effective": len(took),
            "asr_le_1pct_effective": sum(r["asr_after"] <= 0.01 for r in took) / len(took) if took else None,
            "mean_asr_before_backdoored": _mean(_points([r["asr_before"] for r in bad])),
            "mean_asr_backdoored": _mean(_points([r["asr_after"] for r in bad])),
            "mean_acc_drop_backdoored": _mean(drop_bad),
            "worst_acc_drop_backdoored": max(drop_bad) if drop_bad else None,
            "mean_acc_drop_clean": _mean(drop_good),
            "worst_acc_drop_clean": max(drop_good) if drop_good else None,
            "mean_seconds": _mean([float(r["seconds"]) for r in rs]),
            "devices": sorted({str(r.get("device", "unrecorded")) for r in rs}),
        }
    return out


NC_CUT = 2.0  # Neural Cleanse's anomaly-index cut, as published


def _detections(report: dict[str, Any]) -> dict[str, tuple[float, int | None, bool]]:
    """What each detector said in a default-recipe purify report: (score, suspected class, flagged). The finder
    flags when the reference measure of its evidence rule (the suspect's ratio, or that over the median class's)
    is at or below its cut, or, where the report's recipe lets the scan decide (``sensitivity_evidence``; reports
    without the field come from recipes where it did), the sensitivity scan is above its cut. Its score is the
    statistic that decides: cut / measure (the band's edge / measure where the scan's agreement flagged it, see
    ``suspect.corroborated_cut``), and the larger of that and (scan score / scan cut) where the scan decides too, so
    a flagged model scores 1 or more and an unflagged one 1 or less. None ran where the class was
    named (``suspect.target``): no figures."""
    scan, nc = report.get("scan"), report.get("reversal_scan") or {}
    if scan is None:
        return {}
    out: dict[str, tuple[float, int | None, bool]] = {
        "sensitivity": (scan["score"], scan["suspected_target"], scan["score"] > scan["threshold"])
    }
    if "anomaly_index" in nc:
        if "kinds" in nc:  # Neural Cleanse's detector is the stamps', whatever else the finder reversed
            nc = restrict_kinds(nc, TRIGGER_KINDS)
        out["neural_cleanse"] = (nc["anomaly_index"], nc["suspected_target"], nc["anomaly_index"] > NC_CUT)
    reference = (report.get("vote") or {}).get("reference") or {}
    suspect_config = ((report.get("config") or {}).get("recipe") or {}).get("suspect") or {}
    scan_decides = suspect_config.get("sensitivity_evidence", True)
    score = scan["score"] / scan["threshold"] if scan_decides else 0.0
    measure = reference.get("measure", reference.get("ratio_of_suspect"))  # reports before the relative rule
    if measure is not None:
        score = max(score, reference["cut"] / max(measure, 1e-12))
        if (report.get("vote") or {}).get("corroborated"):  # flagged in the band the scan's agreement opens
            score = max(score, reference["corroborated_cut"] / max(measure, 1e-12))
    out["default"] = (score, report["suspect"]["target"], bool(report["suspect"]["evidence"]))
    return out


def defended_name(model_folder: str, defense: str, args: argparse.Namespace) -> str:
    """The cache folder of a recipe defence's purify output: ``MODEL-DEFENCE-FRACTION``, and with ``--set`` items
    ``MODEL-DEFENCE+HASH-FRACTION`` (their hash), so that a run with overrides neither resumes in nor overwrites
    the folder, and the report, of the recipe as named."""
    sets = getattr(args, "user_sets", [])
    tag = f"+{config_hash(sets)[:8]}" if sets else ""
    return f"{model_folder}-{defense}{tag}-{args.clean_fraction}"


def default_report(spec: dict[str, Any], args: argparse.Namespace) -> Path | None:
    """The default recipe's purify report of ``spec``'s model at this run's clean fraction (and ``--set`` items):
    in the cache, else in a ``--join-reports`` folder (as ``FOLDER.json``, the cache folder's name); None when
    there is none."""
    folder = defended_name(train_unit(spec, args).name, "default", args)
    candidates = [Path(args.cache) / "defended" / folder / "report.json"]
    candidates += [Path(d) / f"{folder}.json" for d in args.join_reports]
    return next((path for path in candidates if path.is_file()), None)


def scan_figures(specs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The detectors of the default recipe's reports on this run's models, at the cuts fixed on the development
    split: per detector, AUROC (backdoored against clean), true and false positive rate at the cut, and the
    target-class accuracy on the flagged backdoored models (and on all backdoored models)."""
    seen: dict[str, list[tuple[dict[str, Any], tuple[float, int | None, bool]]]] = {}
    for spec in specs:
        path = default_report(spec, args)
        if path is not None:
            for name, found in _detections(json.loads(path.read_text())).items():
                seen.setdefault(name, []).append((spec, found))
    out: dict[str, dict[str, Any]] = {}
    for name, items in seen.items():
        bad = [(s, f) for s, f in items if s["backdoored"]]
        good = [f for s, f in items if not s["backdoored"]]
        flagged = [(s, f) for s, f in bad if f[2]]
        out[name] = {
            "backdoored": len(bad),
            "clean": len(good),
            "auroc": auroc([f[0] for _, f in bad], [f[0] for f in good]) if bad and good else None,
            "tpr": len(flagged) / len(bad) if bad else None,
            "fpr": sum(f[2] for f in good) / len(good) if good else None,
            "target_accuracy_flagged": sum(f[1] == s["target_label"] for s, f in flagged) / len(flagged)
            if flagged
            else None,
            "target_accuracy": sum(f[1] == s["target_label"] for s, f in bad) / len(bad) if bad else None,
        }
    return out


def common_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the models on which every defence of ``rows`` has a figure (no error, nothing missing): the
    set on which defences compare like for like."""
    defenses = {r["defense"] for r in rows}
    ids = {r["model"]["id"] for r in rows}
    for d in defenses:
        ids &= {r["model"]["id"] for r in rows if r["defense"] == d and "error" not in r}
    return [r for r in rows if r["model"]["id"] in ids]


def summary_by(rows: list[dict[str, Any]], field: str) -> dict[str, dict[str, dict[str, Any]]]:
    """:func:`summary` per value of the model spec's ``field`` (``arch``, ``trigger``): defence -> value -> figures.
    A clean model's ``trigger`` is the one its ASR floor is measured with."""
    values = sorted({str(r["model"][field]) for r in rows})
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for value in values:
        for defense, figures in summary([r for r in rows if str(r["model"][field]) == value]).items():
            out.setdefault(defense, {})[value] = figures
    return out


def _pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _share(f: dict[str, Any], key: str, n: int) -> str:
    """``f[key]`` (a share of ``n`` models) as a count over ``n``."""
    return "–" if f[key] is None else f"{round(f[key] * n)}/{n}"


def _summary_lines(summary_figures: dict[str, dict[str, Any]]) -> list[str]:
    """The per-defence table of a :func:`summary`."""
    lines = [
        "| defence | models (backdoored + clean) | ASR ≤ 1% | ASR ≤ 2% | ASR ≤ 1%, attacks that took | mean ASR "
        "before → after | mean drop, backdoored (worst) | mean drop, clean (worst) | mean s (device) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d, f in summary_figures.items():
        if d == "none":
            continue
        lines.append(
            f"| {d} | {f['models']} ({f['backdoored']} + {f['clean']}) | {_share(f, 'asr_le_1pct', f['backdoored'])} | "
            f"{_share(f, 'asr_le_2pct', f['backdoored'])} | "
            f"{_share(f, 'asr_le_1pct_effective', f['backdoored_effective'])} | "
            f"{_pct(f['mean_asr_before_backdoored'])} → {_pct(f['mean_asr_backdoored'])} | "
            f"{_pct(f['mean_acc_drop_backdoored'], 2)} ({_pct(f['worst_acc_drop_backdoored'], 2)}) | "
            f"{_pct(f['mean_acc_drop_clean'], 2)} ({_pct(f['worst_acc_drop_clean'], 2)}) | "
            f"{_pct(f['mean_seconds'], 0)} ({', '.join(f.get('devices', []))}) |"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The result's tables: per defence; ASR after / accuracy drop per architecture and per trigger family; the
    detectors of the default recipe."""
    lines = _summary_lines(result["summary"])
    if result.get("summary_common") and result["summary_common"] != result["summary"]:
        lines += ["", "The same, on the models on which every defence above has a row:", ""]
        lines += _summary_lines(result["summary_common"])
    for field, title in (("by_arch", "architecture"), ("by_trigger", "trigger family")):
        table = {d: v for d, v in result[field].items() if d != "none"}
        values = sorted({v for per in table.values() for v in per})
        lines += ["", f"Mean ASR after (%) / mean accuracy drop (points) per {title}, backdoored models:", ""]
        lines += [f"| defence | {' | '.join(values)} |", "|---|" + "---|" * len(values)]
        for d, per in table.items():
            cells = [
                f"{_pct(per[v]['mean_asr_backdoored'])} / {_pct(per[v]['mean_acc_drop_backdoored'], 2)}"
                if v in per and per[v]["backdoored"]
                else "–"
                for v in values
            ]
            lines.append(f"| {d} | {' | '.join(cells)} |")
    for source in result.get("joined") or []:
        lines += ["", f"Joined from {source['file']} (an earlier run, commit {source['git_commit']}): "
                  f"{', '.join(source['models'])}."]  # fmt: skip
    if result.get("scan"):
        lines += ["", "| detector | backdoored / clean | AUROC | TPR at the cut | FPR at the cut | target class "
                  "(flagged) | target class (all backdoored) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, f in result["scan"].items():
            lines.append(
                f"| {name} | {f['backdoored']} / {f['clean']} | {_pct(f['auroc'], 2)} | {_pct(f['tpr'], 2)} | "
                f"{_pct(f['fpr'], 2)} | {_pct(f['target_accuracy_flagged'], 2)} | {_pct(f['target_accuracy'], 2)} |"
            )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", required=True, choices=tuple(SPLIT_SEEDS))
    p.add_argument("--quick", action="store_true", help="digits, 4 small models, short recipe settings")
    p.add_argument("--defenses", default="none,paper,default", help="comma-separated: names anp_table accepts")
    p.add_argument(
        "--clean-fraction",
        type=float,
        default=None,
        help="clean data, a share of the training split (default 0.01, --quick 0.08; 0.001: 60 images)",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=None,
        metavar="PATH=VALUE",
        help="a recipe override for every recipe defence (repeatable; --quick adds short settings first)",
    )
    p.add_argument(
        "--cached-only",
        action="store_true",
        help="report the kept models and rows only; what is not kept is listed under 'missing', not computed",
    )
    p.add_argument("--retry-failed", action="store_true", help="recompute the cached rows of defences that failed")
    p.add_argument(
        "--with-rows",
        type=Path,
        action="append",
        default=[],
        metavar="JSON",
        help="a results file of this split and clean fraction (--out-json of an earlier run): its rows of the "
        "defences this run does not run join the tables, for the models whose figures before any defence are "
        "the same here (repeatable)",
    )
    p.add_argument(
        "--join",
        type=Path,
        action="append",
        default=[],
        metavar="JSON",
        help="a results file of an earlier run of this split, clean fraction and recipe version: its models that "
        "this run has no row of join the tables with all their rows (a split run in parts; repeatable)",
    )
    p.add_argument(
        "--join-reports",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of default-recipe reports committed beside a --join file (CACHEFOLDER.json): the detector "
        "figures read the joined models' reports there (repeatable)",
    )
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--cache", type=Path, default=Path("runs/zoo"))
    p.add_argument("--models", default=None, help="comma-separated model ids (e.g. eval-03,eval-07): only these")
    p.add_argument("--part", default="0/1", help="i/n: this process runs models i, i+n, ... (processes share --cache)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CPUs) of each unit")
    anp_table.add_executor_options(p)
    p.add_argument("--list", action="store_true", help="print the specs as JSON and stop")
    p.add_argument("--out-json", type=Path, default=None, help="write rows, summary and config here (atomically)")
    p.add_argument("--out-md", type=Path, default=None, help="write the summary tables here as markdown")
    p.add_argument(
        "--pack",
        type=Path,
        default=None,
        help="copy the split's trained models (no checkpoints) and cached rows "
        "into this new folder, to carry to another machine (zoo_gpu.sh copies runs/carry-SPLIT back), and stop",
    )
    return p


def pack_cache(cache: Path, split: str, dest: Path) -> dict[str, int]:
    """Copy ``split``'s trained models (every file of a model folder but the resumable ``checkpoint.pt``) and its
    cached rows from ``cache`` into ``dest`` (same layout), built beside it and renamed into place when complete;
    returns the counts and bytes copied. An existing ``dest`` is refused (nothing is overwritten)."""
    if dest.exists():
        raise ConfigError(f"--pack={dest} exists; accepted: a folder this command creates")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a leftover of an interrupted pack (this command's own folder)
    counts = {"models": 0, "rows": 0, "bytes": 0}
    for folder in sorted((cache / "models").glob(f"{split}-*")):
        if not (folder / MODEL_NAME).is_file():
            continue  # not trained (or still training)
        target = partial / "models" / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.name != "checkpoint.pt":
                shutil.copy2(f, target / f.name)
                counts["bytes"] += f.stat().st_size
        counts["models"] += 1
    (partial / "rows").mkdir(parents=True, exist_ok=True)
    for f in sorted((cache / "rows").glob(f"{split}-*.json")):
        shutil.copy2(f, partial / "rows" / f.name)
        counts["rows"] += 1
        counts["bytes"] += f.stat().st_size
    partial.rename(dest)
    return counts


def read_results(path: Path, split: str, option: str = "--with-rows") -> dict[str, Any]:
    """A zoo results JSON (``--out-json``) of ``split``; a ConfigError names the option, the file and what is
    accepted."""
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{option}={path} is not accepted ({exc}); accepted: a zoo results JSON") from exc
    if not isinstance(kept, dict) or kept.get("schema") != "pruneguard.zoo/1" or kept.get("split") != split:
        found = kept.get("split") if isinstance(kept, dict) else None
        raise ConfigError(
            f"{option}={path} is not accepted (split {found!r}); accepted: a zoo results JSON of --split {split}"
        )
    return kept


def kept_rows(
    path: Path, kept: dict[str, Any], rows: list[dict[str, Any]], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of ``kept`` (the results file ``path``) of the defences this run does not run and of its clean
    fraction, on the models this run has rows for, and where they came from. A model's accuracy and ASR before
    any defence must equal this run's to the digit (the same trained model: training is deterministic on one
    machine), else a ConfigError; a kept row of a model this run has no row for is listed in ``args.missing``."""
    before = {r["model"]["id"]: (r["accuracy_before"], r["asr_before"]) for r in rows}
    out = []
    for r in kept["rows"]:
        if r["defense"] in args.defense_list or r["clean_fraction"] != args.clean_fraction:
            continue
        mid = r["model"]["id"]
        if mid not in before:
            args.missing.append(f"{mid} {r['defense']} (in {path.name}; no row of the model in this run)")
            continue
        if (r["accuracy_before"], r["asr_before"]) != before[mid]:
            raise ConfigError(
                f"--with-rows={path} is not accepted: {mid} has accuracy/ASR {r['accuracy_before']}/"
                f"{r['asr_before']} before any defence there and {before[mid][0]}/{before[mid][1]} here; "
                "accepted: rows of the same trained models"
            )
        out.append(r)
    defenses = {r["defense"] for r in out}
    recipes = {d: v for d, v in (kept.get("recipes") or {}).items() if d in defenses}
    return out, {"file": str(path), "git_commit": kept.get("git_commit"), "rows": len(out), "recipes": recipes}


def joined_rows(
    path: Path, kept: dict[str, Any], rows: list[dict[str, Any]], recipes: dict[str, Any], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every row of ``kept`` (the results file ``path``, an earlier run of this split) at this run's clean fraction
    of the models that ``rows`` has no row of, and where they came from: a split run in parts (other sessions,
    other machines) joined into one table. A model with a row here keeps this run's figures. A recipe both runs
    ran must have the same config in both (one recipe version per table), else a ConfigError."""
    for name, config in (kept.get("recipes") or {}).items():
        if name in recipes and config != recipes[name]:
            raise ConfigError(
                f"--join={path} is not accepted: its recipe {name!r} differs from this run's; accepted: a results "
                "file of the same recipe version"
            )
    here = {r["model"]["id"] for r in rows}
    out = [r for r in kept["rows"] if r["clean_fraction"] == args.clean_fraction and r["model"]["id"] not in here]
    models = sorted({r["model"]["id"] for r in out})
    source = {"file": str(path), "git_commit": kept.get("git_commit"), "models": models, "rows": len(out)}
    return out, source


def add_script_options(p: argparse.ArgumentParser) -> None:
    """The options of a script that runs on the zoo's models (repair_dev, unlearn_parts): clean data, data folder,
    cache, threads and where the results go."""
    p.add_argument("--clean-fraction", type=float, default=0.01)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--cache", default="runs/zoo")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-json", type=Path, default=None)
    p.add_argument("--out-md", type=Path, default=None)


def write_results(args: argparse.Namespace, result: dict[str, Any], table: str) -> None:
    """``result`` to ``--out-json`` and ``table`` to ``--out-md`` (each atomically, when given); ``table`` printed."""
    if args.out_json is not None:
        atomic_write_json(args.out_json, result)
    if args.out_md is not None:
        atomic_write_text(args.out_md, table)
    print(table)


def chosen_specs(specs: list[dict[str, Any]], models: str, error: Any) -> list[dict[str, Any]]:
    """The specs named in ``models`` (comma-separated ids); ``error`` (a parser's) is called with one line when a
    name is not an id of the split or none is given."""
    ids = [spec["id"] for spec in specs]
    wanted = [m for m in models.split(",") if m]
    if not wanted or set(wanted) - set(ids):
        error(f"--models={models!r} is not accepted; accepted: ids of the split, {ids[0]} to {ids[-1]}")
    return [spec for spec in specs if spec["id"] in wanted]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parsed and checked options; a bad value exits 2 with one line naming the option, the value and what is
    accepted."""
    p = build_parser()
    args = p.parse_args(argv)
    mode = MODES["quick" if args.quick else "full"]
    args.defense_list = [d for d in args.defenses.split(",") if d]
    accepted = anp_table.all_defenses()
    unknown = [d for d in args.defense_list if d not in accepted]
    if unknown or not args.defense_list:
        p.error(
            f"--defenses={args.defenses!r} is not accepted; accepted: a comma-separated list of {', '.join(accepted)}"
        )
    if args.clean_fraction is None:
        args.clean_fraction = mode["clean_fraction"]
    if not 0.0 < args.clean_fraction <= 1.0:
        p.error(f"--clean-fraction={args.clean_fraction} is not accepted; accepted: a number in (0, 1]")
    try:
        i, n = (int(v) for v in args.part.split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        p.error(f"--part={args.part!r} is not accepted; accepted: i/n with 0 <= i < n")
    args.part_index, args.part_count = i, n
    args.missing = []  # (model, defence) cells that --cached-only found no kept result for
    if args.models is not None:
        chosen_specs(zoo_specs(args.split, quick=args.quick), args.models, p.error)
    if args.split in EVAL_SPLITS and args.sets and not args.quick:
        p.error(
            f"--set={args.sets!r} is not accepted with --split {args.split}; accepted: recipes by name only (recipe "
            "choices are made on the dev split, the eval split runs each recipe version once, as shipped)"
        )
    try:
        args.with_rows_data = [read_results(path, args.split) for path in args.with_rows]
        args.join_data = [read_results(path, args.split, option="--join") for path in args.join]
    except ConfigError as exc:
        p.error(str(exc))
    inputs = {path.resolve() for path in [*args.with_rows, *args.join]}
    for option, out in (("--out-json", args.out_json), ("--out-md", args.out_md)):
        if out is not None and out.resolve() in inputs:
            p.error(f"{option}={out} is not accepted: it is an input (--with-rows/--join); accepted: another file")
    for folder in args.join_reports:
        if not folder.is_dir():
            p.error(f"--join-reports={folder} is not accepted; accepted: a folder of default-recipe reports")
    if args.pack is not None and args.pack.exists():
        p.error(f"--pack={args.pack} exists; accepted: a folder this command creates")
    args.user_sets = list(args.sets or [])  # the overrides beyond the mode's: they name the purify folders
    args.sets = [*mode["sets"], *args.user_sets]
    anp_table.check_executor_options(p, args)
    try:
        for d in args.defense_list:
            if anp_table.is_recipe_defense(d):
                recipe_for(d, args, table_namespace(zoo_specs(args.split, quick=args.quick)[0], args))
    except (ConfigError, ValueError) as exc:
        p.error(f"--set={args.sets!r} is not accepted: {str(exc).splitlines()[0]}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    specs = zoo_specs(args.split, quick=args.quick)
    if args.list:
        print(json.dumps(specs, indent=2))
        return 0
    if args.pack is not None:
        print(json.dumps(pack_cache(args.cache, args.split, args.pack)))
        return 0
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    if args.models is not None:
        specs = [s for s in specs if s["id"] in args.models.split(",")]
    specs = specs[args.part_index :: args.part_count]
    rows, computed = zoo_rows(specs, args)
    table_args = table_namespace(specs[0], args)
    recipes = {d: recipe_for(d, args, table_args) for d in args.defense_list if anp_table.is_recipe_defense(d)}
    joined = []
    for path, kept in zip(args.join, args.join_data, strict=True):
        try:
            added, source = joined_rows(path, kept, rows, recipes, args)
        except ConfigError as exc:
            print(f"zoo.py: error: {exc}", file=sys.stderr)
            return 2
        rows = rows + added
        joined.append(source)
        specs += list({r["model"]["id"]: r["model"] for r in sorted(added, key=lambda r: r["model"]["id"])}.values())
    merged = []
    for path, kept in zip(args.with_rows, args.with_rows_data, strict=True):
        try:
            added, source = kept_rows(path, kept, rows, args)
        except ConfigError as exc:
            print(f"zoo.py: error: {exc}", file=sys.stderr)
            return 2
        rows = added + rows
        merged.append(source)
    config = {k: v for k, v in vars(args).items() if k not in ("with_rows_data", "join_data")}
    config = json.loads(json.dumps(config, default=str))
    result = {
        "schema": "pruneguard.zoo/1",
        "split": args.split,
        "summary": summary(rows),
        "summary_common": summary(common_rows(rows)),
        "by_arch": summary_by(rows, "arch"),
        "by_trigger": summary_by(rows, "trigger"),
        "scan": scan_figures(specs, args),
        "rows": rows,
        "computed": computed,
        "missing": args.missing,
        "recipes": recipes,
        "recipes_hash": config_hash(recipes),
        "with_rows": merged,
        "joined": joined,
        "config": config,
        "git_commit": git_commit(),
        "versions": versions(),
    }
    if args.out_json is not None:
        atomic_write_json(args.out_json, result)
    if args.out_md is not None:
        atomic_write_text(args.out_md, markdown(result))
    print(json.dumps({"summary": result["summary"], "computed": computed}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
