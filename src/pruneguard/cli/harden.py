"""``pruneguard harden``: prune (and optionally adversarially fine-tune and quantize) a model, evaluated honestly.

With ``--csv PATH --label COLUMN`` and no ``--model``, a small MLP is trained on the CSV first (saved as
``dense.safetensors`` in ``--out``); with ``--model`` the MLP file is used as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from pruneguard.cli.common import THREADS_HELP, check_data_dir, configure_runtime, emit_json, output_folder
from pruneguard.config import validate_config
from pruneguard.config_harden import HardenConfig
from pruneguard.policy import RuleResult, load_policy, policy_exit_code
from pruneguard.utils.seed import seed_everything
from pruneguard.workflows.harden import harden as harden_job
from pruneguard.workflows.harden import write_harden_outputs


def summary_lines(report: dict[str, Any]) -> list[str]:
    f = lambda v: "    –" if v is None else f"{v:6.3f}"  # noqa: E731
    lines = [f"{'stage':8}{'sparsity':>9}{'clean':>8}{'FGSM':>8}{'PGD':>8}{'Square':>8}{'transfer':>9}"]
    for s in report["stages"]:
        lines.append(
            f"{s['stage']:8}{f(s['sparsity']):>9}{f(s['clean']):>8}{f(s['fgsm']):>8}{f(s['pgd']):>8}"
            f"{f(s['square']):>8}{f(s['transfer_pgd']):>9}"
        )
    lines.append(report["verdict"]["statement"])
    if report["collapse"]["stopped"]:
        lines.append("collapse: " + report["collapse"]["message"])
    lines += [f"flag ({fl['model']}) {fl['check']}: {fl['message']}" for fl in report["flags"]]
    if report.get("policy"):
        failed = [r["rule"] for r in report["policy"]["rules"] if not r["passed"]]
        lines.append("policy: passed" if not failed else f"policy: FAILED ({', '.join(failed)})")
    return lines


def harden(
    out: Path = typer.Option(..., "--out", help="Output folder: hardened.safetensors, report.json, report.html."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model file (required unless --csv trains one)."),  # noqa: UP045
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the one named in the model file)."),  # noqa: UP045
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the dataset files."),  # noqa: UP045
    csv: Optional[Path] = typer.Option(None, help="Tabular data: a CSV file with a header row (needs --label)."),  # noqa: UP045
    label: Optional[str] = typer.Option(None, help="The label column of --csv."),  # noqa: UP045
    test_fraction: float = typer.Option(0.2, help="--csv: share of rows in the test split."),
    train_epochs: int = typer.Option(30, help="--csv without --model: epochs of the MLP trained first."),
    target_sparsity: float = typer.Option(0.5, help="Final sparsity (structured: fraction of channels removed)."),
    step: float = typer.Option(0.1, help="Sparsity added per prune / fine-tune cycle."),
    finetune_epochs: int = typer.Option(1, help="Fine-tuning epochs per cycle (0: none)."),
    finetune_lr: float = typer.Option(0.01),
    batch_size: int = typer.Option(128),
    structured: bool = typer.Option(False, help="Remove channels (a really smaller model) instead of weights."),
    adv_train: Optional[str] = typer.Option(None, help="Adversarial fine-tuning each cycle: pgd or trades."),  # noqa: UP045
    adv_steps: int = typer.Option(7, help="PGD steps of adversarial fine-tuning."),
    quantize: Optional[str] = typer.Option(None, help="int8: also quantize and evaluate (BPDA, transfer)."),  # noqa: UP045
    max_acc_drop: float = typer.Option(0.05, help="Collapse: clean accuracy drop from the dense model."),
    robust_stop: bool = typer.Option(True, help="Collapse also when PGD accuracy falls below the dense model's."),
    eps: float = typer.Option(0.1, help="Budget: [0, 1] pixel units; standard deviations for tabular data."),
    norm: str = typer.Option("linf", help="linf or l2."),
    pgd_steps: int = typer.Option(20, help="PGD iterations of the evaluation."),
    square_queries: int = typer.Option(1000, help="Square Attack queries (0: skip Square)."),
    eps_sweep: Optional[str] = typer.Option(None, help="Budgets of the eps curve, comma-separated."),  # noqa: UP045
    n_eval: int = typer.Option(500, help="Test samples evaluated (stratified, seeded)."),
    clean_samples: int = typer.Option(512, help="Size of the defender's split (calibration, collapse checks)."),
    feature_keep: Optional[float] = typer.Option(None, help="Tabular: keep this share of input features."),  # noqa: UP045
    feature_importance: str = typer.Option("gradient", help="Feature importance: gradient or weight."),
    policy: Optional[Path] = typer.Option(None, help="YAML policy (e.g. min_robust_accuracy); exit 3 if it fails."),  # noqa: UP045
    seed: int = typer.Option(0),
    threads: str = typer.Option("1", help=THREADS_HELP),
    resume: bool = typer.Option(False, help="Continue an interrupted run in --out."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out folder."),
    trust_pickle: bool = typer.Option(False, help="Allow pickled model files (runs their code!)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Prune a model step by step and report honestly whether it became more robust."""
    cfg = validate_config(
        HardenConfig,
        dict(
            out=out,
            model=model,
            dataset=dataset,
            data_dir=data_dir,
            csv=csv,
            label=label,
            test_fraction=test_fraction,
            train_epochs=train_epochs,
            target_sparsity=target_sparsity,
            step=step,
            finetune_epochs=finetune_epochs,
            finetune_lr=finetune_lr,
            batch_size=batch_size,
            structured=structured,
            adv_train=adv_train,
            adv_steps=adv_steps,
            quantize=quantize,
            max_acc_drop=max_acc_drop,
            robust_stop=robust_stop,
            eps=eps,
            norm=norm,
            pgd_steps=pgd_steps,
            square_queries=square_queries,
            eps_sweep=eps_sweep,
            n_eval=n_eval,
            clean_samples=clean_samples,
            feature_keep=feature_keep,
            feature_importance=feature_importance,
            policy=policy,
            seed=seed,
            resume=resume,
            trust_pickle=trust_pickle,
        ),
    )
    rules = load_policy(policy) if policy is not None else None
    check_data_dir(data_dir)
    configure_runtime(threads)
    inputs = tuple(p for p in (model, csv, policy, data_dir) if p is not None)
    with output_folder(out, overwrite=overwrite, resume=resume, inputs=inputs):
        seed_everything(seed)
        result = harden_job(cfg, policy=rules)
        write_harden_outputs(cfg, result)
    report = result.report
    if json_out:
        emit_json(report)
    else:
        typer.echo("\n".join(summary_lines(report)))
        typer.echo(f"report: {out / 'report.html'}")
    if report.get("policy"):
        code = policy_exit_code([RuleResult(**r) for r in report["policy"]["rules"]])
        if code:
            raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("harden")(harden)
