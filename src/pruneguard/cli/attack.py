"""``pruneguard attack``: evaluate a model file against one registered evasion attack."""

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
    write_result,
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
from pruneguard.config_harden import AttackRunConfig
from pruneguard.utils.seed import seed_everything
from pruneguard.workflows.attack import attack_job, write_attack_report


def summary_lines(result: dict[str, Any]) -> list[str]:
    sr = result["attack_success_rate"]
    lines = [
        f"{result['attack']['name']} (eps {result['threat_model']['eps']:g}, {result['threat_model']['norm']}) on "
        f"{result['n_samples']} test samples: clean {result['clean_accuracy']:.4f}, robust "
        f"{result['robust_accuracy']:.4f}, success rate {'n/a' if sr is None else f'{sr:.4f}'}"
    ]
    lines += [f"flag {f['check']}: {f['message']}" for f in result["flags"]]
    return lines


def attack(
    model: Path = typer.Option(..., "--model", help="Model file (.safetensors from pruneguard, or a state dict)."),
    out: Path = typer.Option(..., "--out", help="Output folder: result.json, report.html, config.yaml."),
    attack_name: str = typer.Option("pgd", "--attack", help="Evasion attack: fgsm, pgd, square, autoattack, transfer."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the one named in the model file)."),  # noqa: UP045
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the dataset files."),  # noqa: UP045
    eps: float = typer.Option(0.1, help="Budget: [0, 1] pixel units; standard deviations for tabular data."),
    norm: str = typer.Option("linf", help="linf or l2."),
    steps: Optional[int] = typer.Option(None, help="Iterations (pgd)."),  # noqa: UP045
    step_size: Optional[float] = typer.Option(None, help="Step size (pgd; default 2.5 * eps / steps)."),  # noqa: UP045
    restarts: Optional[int] = typer.Option(None, help="Random restarts (pgd, square)."),  # noqa: UP045
    queries: Optional[int] = typer.Option(None, help="Query budget (square)."),  # noqa: UP045
    version: Optional[str] = typer.Option(None, help="AutoAttack version (standard, plus, rand)."),  # noqa: UP045
    source: Optional[Path] = typer.Option(None, help="Surrogate model file for --attack transfer."),  # noqa: UP045
    n_samples: int = typer.Option(1000, help="Test samples attacked (stratified, seeded)."),
    batch_size: int = typer.Option(256),
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
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Attack a model with one evasion attack and report clean and robust accuracy."""
    cfg = validate_config(
        AttackRunConfig,
        dict(
            device=device,
            model=model,
            out=out,
            attack=attack_name,
            dataset=dataset,
            data_dir=data_dir,
            eps=eps,
            norm=norm,
            steps=steps,
            step_size=step_size,
            restarts=restarts,
            queries=queries,
            version=version,
            source=source,
            n_samples=n_samples,
            batch_size=batch_size,
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
        ),
    )
    check_data_dir(data_dir)
    check_device(cfg.device)
    configure_runtime(threads)
    inputs = tuple(p for p in (model, source, data_dir) if p is not None)
    with output_folder(out, overwrite=overwrite, inputs=inputs):
        seed_everything(seed)
        result = attack_job(cfg)
        write_result(out, result, cfg.to_dict())
        write_attack_report(out, result)
    if json_out:
        emit_json(result)
    else:
        typer.echo("\n".join(summary_lines(result)))


def register(app: typer.Typer) -> None:
    app.command("attack")(attack)
