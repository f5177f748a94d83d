"""``pruneguard harden``: prune (and optionally adversarially fine-tune and quantize) a model, evaluated honestly.

With ``--csv PATH --label COLUMN`` and no ``--model``, a small MLP is trained on the CSV first (saved as
``dense.safetensors`` in ``--out``); with ``--model`` the MLP file is used as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from pruneguard.cli.common import (
    DEVICE,
    THREADS_HELP,
    check_data_dir,
    check_device,
    configure_runtime,
    emit_json,
    output_folder,
)
from pruneguard.cli.model_options import (
    ARCH,
    ARCH_KWARGS,
    INPUT_SHAPE,
    MEAN,
    NORMALIZATION_INSIDE,
    NUM_CLASSES,
    STD,
    model_description,
)
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
    lines += positive_lines(report)
    lines.append(report["verdict"]["statement"])
    for kind, rec in (report.get("onnx") or {}).items():
        if rec is None:
            continue
        if rec.get("file") is None:
            lines.append(f"ONNX {kind}: {rec['reason']}")
        else:
            lines.append(
                f"ONNX {kind}: {rec['file']} (onnxruntime vs PyTorch on {rec['n']} test rows: max |logit difference| "
                f"{rec['max_abs_diff']:.2e}, argmax agreement {rec['argmax_agreement']:.2%})"
            )
    if report["collapse"]["stopped"]:
        lines.append("collapse: " + report["collapse"]["message"])
    lines += [f"flag ({fl['model']}) {fl['check']}: {fl['message']}" for fl in report["flags"]]
    if report.get("policy"):
        failed = [r["rule"] for r in report["policy"]["rules"] if not r["passed"]]
        lines.append("policy: passed" if not failed else f"policy: FAILED ({', '.join(failed)})")
    return lines


def positive_lines(report: dict[str, Any]) -> list[str]:
    """The rare class's table (tabular data under 20% positives, or --positive-label)."""
    pc = report.get("positive_class")
    if not pc:
        return []
    f = lambda v: "    –" if v is None or v != v else f"{v:6.3f}"  # noqa: E731
    head = f"positive class {pc['positive_label']!r} ({pc['n_positive_test']} of {pc['n_test']} test rows)"
    lines = [head, f"{'stage':8}{'prec':>8}{'recall':>8}{'PR-AUC':>8}{'rec@FPR':>9}{'robust':>8}  (FPR {pc['fpr']:g})"]
    for name, s in pc["stages"].items():
        lines.append(
            f"{name:8}{f(s['precision']):>8}{f(s['recall']):>8}{f(s['pr_auc']):>8}{f(s['recall_at_fpr']):>9}"
            f"{f(s.get('robust_recall_at_fpr')):>8}"
        )
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
    onnx: bool = typer.Option(
        False, "--onnx", help="Also write hardened.onnx (and hardened_int8.onnx with --quantize where it exports)."
    ),
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
    positive_label: Optional[str] = typer.Option(  # noqa: UP045
        None, help="Tabular: the positive (rare) class's label, e.g. 1 (default: the class under 20% of rows)."
    ),
    fpr: float = typer.Option(0.01, help="Tabular, rare class: false-positive rate of the operating threshold."),
    constraints: Optional[Path] = typer.Option(  # noqa: UP045
        None, help="Tabular: YAML of immutable columns, bounds, integer and one-hot columns for evasion."
    ),
    policy: Optional[Path] = typer.Option(None, help="YAML policy (e.g. min_robust_accuracy); exit 3 if it fails."),  # noqa: UP045
    seed: int = typer.Option(0),
    threads: str = typer.Option("1", help=THREADS_HELP),
    device: str = DEVICE,
    resume: bool = typer.Option(False, help="Continue an interrupted run in --out."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out folder."),
    trust_pickle: bool = typer.Option(False, help="Allow pickled model files (runs their code!)."),
    arch: Optional[str] = ARCH,  # noqa: UP045
    arch_kwargs: str = ARCH_KWARGS,
    num_classes: Optional[int] = NUM_CLASSES,  # noqa: UP045
    input_shape: Optional[str] = INPUT_SHAPE,  # noqa: UP045
    mean: Optional[str] = MEAN,  # noqa: UP045
    std: Optional[str] = STD,  # noqa: UP045
    normalization_inside: bool = NORMALIZATION_INSIDE,
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Prune a model step by step and report honestly whether it became more robust."""
    cfg = validate_config(
        HardenConfig,
        dict(
            device=device,
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
            onnx=onnx,
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
            positive_label=positive_label,
            fpr=fpr,
            constraints=constraints,
            policy=policy,
            seed=seed,
            resume=resume,
            trust_pickle=trust_pickle,
            **model_description(
                arch=arch,
                arch_kwargs=arch_kwargs,
                num_classes=num_classes,
                input_shape=input_shape,
                mean=mean,
                std=std,
                normalization_inside=normalization_inside,
            ),
        ),
    )
    rules = load_policy(policy) if policy is not None else None
    check_data_dir(data_dir)
    check_device(cfg.device)
    configure_runtime(threads)
    inputs = tuple(p for p in (model, csv, policy, constraints, data_dir) if p is not None)
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
