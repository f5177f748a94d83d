"""``pruneguard purify``: run a purification recipe on a possibly backdoored model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from pruneguard.cli.common import (
    DEVICE,
    check_data_dir,
    check_device,
    configure_runtime,
    emit_json,
    output_folder,
    progress_enabled,
)
from pruneguard.config import PurifyConfig
from pruneguard.errors import ConfigError
from pruneguard.policy import evaluate_policy, load_policy, policy_exit_code, policy_record
from pruneguard.recipes import RECIPES, Recipe, apply_overrides, get_recipe, load_recipe_file, parse_set
from pruneguard.recipes.overrides import FieldError, build
from pruneguard.utils.seed import seed_everything
from pruneguard.workflows.purify import purify as purify_job
from pruneguard.workflows.purify import write_purify_outputs

__all__ = ["purify", "summary_lines", "purify_config", "parse_clean_size"]

# run-config fields that have a flag of their own; any other field is reached with --set FIELD=VALUE
_FLAGS = {
    "model": "--model",
    "arch": "--arch",
    "dataset": "--dataset",
    "out": "--out",
    "clean_fraction": "--clean-size",
    "clean_samples": "--clean-size",
    "seed": "--seed",
    "policy": "--policy",
    "device": "--device",
}
_RECIPE_FIELDS = set(Recipe.model_fields)
_RUN_FIELDS = set(PurifyConfig.model_fields)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The verdict sentence, then the figures before/after as percentages."""
    b, a, mid = report["before"], report["after"], report.get("after_pruning")
    rows = [("before", b), *([("pruned", mid)] if mid else []), ("after", a)]
    lines = [report["verdict"]["sentence"], f"{'':8}{'validation':>12}{'test acc':>10}{'ASR':>9}"]
    for name, r in rows:
        lines.append(
            f"{name:8}{_pct(r.get('validation_accuracy')):>12}{_pct(r['accuracy']):>10}{_pct(r.get('asr')):>9}"
        )
    lines.append(
        f"recipe {report['recipe']}: pruned {report['pruned_neurons']}/{report.get('total_neurons') or '–'} neurons, "
        f"{report['used_samples']} clean samples used + {report['validation_samples']} for validation, "
        f"{report['seconds']:.0f} s"
    )
    return lines


def parse_clean_size(text: str) -> dict[str, Any]:
    """``--clean-size``: a fraction of the training split (``0.01``, ``1%``) or a count of images (``600``)."""
    t = text.strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        v = float("nan")
    if t.endswith("%") or "." in t or "e" in t.lower():
        if 0 < v <= 1:
            return {"clean_fraction": v, "clean_samples": None}
    elif math.isfinite(v) and v >= 2 and v == int(v):
        return {"clean_fraction": None, "clean_samples": int(v)}
    raise ConfigError(
        f"--clean-size={text!r} is not accepted; accepted: a fraction of the training split in (0, 1] such as "
        "0.01 or 1%, or a count of images >= 2 such as 600"
    )


def purify_config(
    *,
    config: Path | None = None,
    recipe: str | None = None,
    sets: list[str] | None = None,
    **given: Any,
) -> PurifyConfig:
    """The run config from (lowest first) the default recipe, a ``--config`` file, the flags given, ``--recipe``
    and ``--set`` items. A ``--set`` path may leave out ``recipe.`` (``anp.iterations=500``)."""
    data: dict[str, Any] = load_recipe_file(config) if config is not None else {}
    data.update({k: v for k, v in given.items() if v is not None})
    if recipe is not None:
        data["recipe"] = recipe
    named = data.get("recipe", None)
    if named is None or isinstance(named, str):
        data["recipe"] = get_recipe(named or "default").to_dict()
    elif not isinstance(named, dict):
        raise ConfigError(
            f"recipe={named!r} is not accepted; accepted: a recipe name ({', '.join(RECIPES.names())}) "
            "or a mapping of its fields"
        )
    items = []
    for item in sets or []:
        keys, _ = parse_set(item)
        if keys[0] in _RECIPE_FIELDS and keys[0] not in _RUN_FIELDS:
            item = "recipe." + item
            if keys[0] != "name":
                data["recipe"]["name"] = (
                    str(data["recipe"].get("name", "custom")).removesuffix(" (modified)") + " (modified)"
                )
        items.append(item)
    data = apply_overrides(data, items)
    for key in ("model", "out"):
        if data.get(key) in (None, ""):
            raise ConfigError(f"{_FLAGS[key]} is required (or a --config file that names {key})")
    try:
        return build(PurifyConfig, data)
    except FieldError as exc:
        flag = _FLAGS.get(exc.field)
        raise ConfigError(
            f"{flag}={exc.value!r}: {exc.detail}" if flag else f"--set {exc.field}={exc.value!r}: {exc.detail}"
        ) from None
    except ConfigError as exc:  # a rule across fields: its message starts with the field it is about
        field, sep, rest = str(exc).partition("=")
        if sep and field in _FLAGS:
            raise ConfigError(f"{_FLAGS[field]}={rest}") from None
        raise


def purify(
    model: Path | None = typer.Option(
        None, "--model", help="Model file: safetensors (pruneguard's or plain) or a torch state dict."
    ),
    arch: str | None = typer.Option(
        None,
        help="Architecture of a file without metadata: zoo name or pkg.mod:factory "
        "(keyword arguments: --set arch_kwargs='{width: 0.5}').",
    ),
    dataset: str | None = typer.Option(
        None, help="Dataset (default: the one named in the model file; its folder: --set data_dir=PATH)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder: purified.safetensors, report.json/html, config.yaml."
    ),
    clean_size: str | None = typer.Option(
        None, help="Clean data: a fraction of the training split (0.01, 1%) or a count (600). Default 1%."
    ),
    recipe: str | None = typer.Option(None, help=f"Recipe by name: {', '.join(RECIPES.names())} (default: default)."),
    config: Path | None = typer.Option(
        None, "--config", help="A config.yaml (e.g. one written beside a report): reproduces that run."
    ),
    sets: list[str] | None = typer.Option(
        None,
        "--set",
        metavar="FIELD=VALUE",
        help="FIELD=VALUE for one field, repeatable: anp.iterations=500, max_acc_drop=0.01, eval_attack=badnets, "
        "onnx=true (also write purified.onnx, checked with onnxruntime), threads=2 (torch CPU threads: a number, or "
        "auto: times 1 vs all cores and takes the faster; default 1).",
    ),
    seed: int | None = typer.Option(None, help="Seed of every random draw (default 0)."),
    device: str = DEVICE,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    policy: Path | None = typer.Option(None, help="YAML policy (e.g. max_accuracy_drop); exit 3 if it fails."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Purify a possibly backdoored model with a recipe (default: scan, targeted ANP, unlearning, guard).

    Exit 3 when the verdict is failed (the guard's limits could not be met) or a policy rule fails."""
    cfg = purify_config(
        config=config,
        recipe=recipe,
        sets=sets,
        model=model,
        arch=arch,
        dataset=dataset,
        out=out,
        seed=seed,
        policy=policy,
        device=device,
        **(parse_clean_size(clean_size) if clean_size is not None else {}),
    )
    rules = load_policy(cfg.policy) if cfg.policy is not None else None  # a bad policy fails before any work
    check_device(cfg.device)
    configure_runtime(cfg.threads)
    check_data_dir(cfg.data_dir)
    inputs = tuple(p for p in (cfg.model, cfg.policy, config, cfg.data_dir) if p is not None)
    with output_folder(cfg.out, overwrite=overwrite, resume=resume, inputs=inputs):
        seed_everything(cfg.seed)
        report, purified, meta = purify_job(cfg, progress=progress_enabled(), resume=resume)
        code = int(report["verdict"]["exit_code"])
        if rules is not None:
            measured = {"accuracy_drop": report["accuracy_drop"], "asr": report["after"]["asr"]}
            results = evaluate_policy(rules, measured)
            report["policy"] = policy_record(results, cfg.policy)
            code = max(code, policy_exit_code(results))
        write_purify_outputs(cfg, report, purified, meta)
    if json_out:
        emit_json(report)
    else:
        typer.echo("\n".join(summary_lines(report)))
        typer.echo(f"report: {cfg.out / 'report.html'}")
        if report.get("policy"):
            failed = [r["rule"] for r in report["policy"]["rules"] if not r["passed"]]
            typer.echo("policy: passed" if not failed else f"policy: FAILED ({', '.join(failed)})")
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("purify")(purify)
