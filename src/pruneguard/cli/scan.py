"""``pruneguard scan``: neuron-sensitivity scan of an untrusted model (no retraining, no trigger knowledge)."""

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
    progress_enabled,
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
from pruneguard.policy import RuleResult, load_policy, policy_exit_code
from pruneguard.utils.seed import seed_everything
from pruneguard.workflows.scan import NC_ANOMALY_CUT, SCAN_STEPS, ScanConfig, ScanRunConfig, write_scan_outputs
from pruneguard.workflows.scan import scan as scan_job

_DEFAULT = ScanConfig()
_DEFAULT_EPS = ",".join(str(e) for e in _DEFAULT.eps)


def summary_lines(report: dict[str, Any]) -> list[str]:
    target = report["suspected_target"]
    lines = [report["verdict_sentence"]]
    lines += [
        f"  {r['detector']}: class {r['class']}, {r['score']:.4f} vs cut {r['cut']:.4f} "
        f"({'flagged' if r['flagged'] else 'above the cut' if r['lower_flags'] else 'under the cut'}"
        f"{'' if r.get('decides', True) else '; recorded, does not decide'})"
        for r in report["evidence"]
    ]
    lines += [
        f"verdict {report['verdict']}; sensitivity scan: score {report['score']:.4f} (threshold "
        f"{report['threshold']:.4f}), errors on class {'–' if target is None else target} "
        f"({report['target_share']:.0%} of them)",
        "  eps   error  top-share  flip",
    ]
    lines += [
        f"  {r['eps']:.2f}  {r['error_rate']:.3f}  {r['top_share']:9.3f}  {r['flip']:.3f}" for r in report["curve"]
    ]
    lines.append(f"{report['clean_samples']} clean samples, {report['seconds']:.1f} s")
    if report.get("policy"):
        failed = [r["rule"] for r in report["policy"]["rules"] if not r["passed"]]
        lines.append("policy: passed" if not failed else f"policy: FAILED ({', '.join(failed)})")
    return lines


def scan(
    model: Path = typer.Option(..., "--model", help="Model file (.safetensors from pruneguard, or a state dict)."),
    out: Path = typer.Option(..., "--out", help="Output folder: report.json, report.html, config.yaml."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the one named in the model file)."),  # noqa: UP045
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the dataset files."),  # noqa: UP045
    clean_fraction: float = typer.Option(0.01, help="Clean split size as a fraction of the training split."),
    clean_samples: Optional[int] = typer.Option(None, help="Clean split size as a count (wins over the fraction)."),  # noqa: UP045
    eps: str = typer.Option(_DEFAULT_EPS, help="Perturbation budgets, comma-separated."),
    steps: int = typer.Option(_DEFAULT.steps, help="Ascent steps per restart."),
    restarts: int = typer.Option(_DEFAULT.restarts, help="Random restarts per budget."),
    batch_size: int = typer.Option(_DEFAULT.batch_size, help="Samples per ascent / evaluation chunk."),
    threshold: float = typer.Option(_DEFAULT.threshold, help="Scores above this are 'suspicious'."),
    reversal: bool = typer.Option(
        False, help="Also run the trigger-reversal detector (Neural Cleanse's anomaly index; images only)."
    ),
    reversal_steps: int = typer.Option(SCAN_STEPS, help="Reversal optimisation steps per class."),
    anomaly_cut: float = typer.Option(NC_ANOMALY_CUT, help="Anomaly indices above this flag the model."),
    finder: bool = typer.Option(
        True,
        help="Also judge the classes the scans name against a model trained on the clean split alone "
        "(purify's suspect finder; images only; minutes on a CPU).",
    ),
    policy: Optional[Path] = typer.Option(  # noqa: UP045
        None, help="YAML policy (e.g. no_backdoor_evidence: true); exit 3 when a rule fails."
    ),
    seed: int = typer.Option(0),
    threads: str = typer.Option("1", help=THREADS_HELP),
    device: str = DEVICE,
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
    """Scan a model for backdoor symptoms: how it fails under adversarial neuron perturbations."""
    cfg = validate_config(
        ScanRunConfig,
        dict(
            device=device,
            model=model,
            out=out,
            dataset=dataset,
            data_dir=data_dir,
            clean_fraction=clean_fraction,
            clean_samples=clean_samples,
            eps=eps,
            steps=steps,
            restarts=restarts,
            batch_size=batch_size,
            threshold=threshold,
            reversal=reversal,
            reversal_steps=reversal_steps,
            anomaly_cut=anomaly_cut,
            finder=finder,
            seed=seed,
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
            policy=policy,
        ),
    )
    rules = load_policy(policy) if policy is not None else None
    check_data_dir(data_dir)
    check_device(cfg.device)
    configure_runtime(threads)
    inputs = tuple(p for p in (model, policy, data_dir) if p is not None)
    with output_folder(out, overwrite=overwrite, inputs=inputs):
        seed_everything(seed)
        report = scan_job(cfg, policy=rules, progress=progress_enabled())
        write_scan_outputs(cfg, report)
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
    app.command("scan")(scan)
