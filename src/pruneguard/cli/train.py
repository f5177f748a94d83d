"""``pruneguard train``: train a clean or backdoored model on a registered dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pruneguard.cli.common import (
    DEVICE,
    THREADS_HELP,
    check_data_dir,
    check_device,
    configure_runtime,
    emit_json,
    output_folder,
    parse_json_option,
    progress_enabled,
    write_result,
)
from pruneguard.config import TrainRunConfig, validate_config
from pruneguard.data.datasets import dataset_info
from pruneguard.utils.seed import seed_everything
from pruneguard.workflows.train import make_attack, train_job, write_train_report


def train(
    out: Path = typer.Option(..., "--out", help="Run folder: model.safetensors, result.json, config.yaml."),
    dataset: str = typer.Option("fashion_mnist", help="Registered dataset (pruneguard list datasets)."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the dataset files."),  # noqa: UP045
    arch: str = typer.Option("small_cnn", help="Zoo name or package.module:factory."),
    width: float = typer.Option(1.0, help="Channel width multiplier (zoo models)."),
    attack: Optional[str] = typer.Option(None, help="Backdoor attack to poison with (pruneguard list attacks)."),  # noqa: UP045
    attack_params: str = typer.Option(
        "{}", help="The attack's parameters as a JSON object, e.g. '{\"delta\": 0.157}' for sig."
    ),
    poison_rate: float = typer.Option(0.05, help="Share of non-target training images poisoned."),
    target_label: int = typer.Option(0, help="The attacker's target class."),
    holdout_fraction: float = typer.Option(0.1, help="Training data held out for the defender."),
    epochs: int = typer.Option(5),
    batch_size: int = typer.Option(128),
    lr: float = typer.Option(0.05),
    schedule: str = typer.Option("cosine", help="cosine, step or constant."),
    augment: bool = typer.Option(True, help="Random crop and horizontal flip."),
    seed: int = typer.Option(0),
    threads: str = typer.Option("1", help=THREADS_HELP),
    device: str = DEVICE,
    resume: bool = typer.Option(False, help="Continue from the run folder's last epoch checkpoint."),
    overwrite: bool = typer.Option(False, help="Replace an existing run folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train a model (optionally backdoored) and save it with its held-out indices."""
    cfg = validate_config(
        TrainRunConfig,
        dict(
            device=device,
            out=out,
            dataset=dataset,
            data_dir=data_dir,
            arch=arch,
            width=width,
            attack=attack,
            attack_params=parse_json_option("--attack-params", attack_params),
            poison_rate=poison_rate,
            target_label=target_label,
            holdout_fraction=holdout_fraction,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            schedule=schedule,
            augment=augment,
            seed=seed,
            resume=resume,
        ),
    )
    make_attack(cfg, dataset_info(cfg.dataset).num_classes)  # bad attack parameters fail before --out is touched
    check_data_dir(data_dir)
    check_device(cfg.device)
    configure_runtime(threads)
    with output_folder(out, overwrite=overwrite, resume=resume, inputs=(data_dir,) if data_dir is not None else ()):
        seed_everything(seed)
        result, _ = train_job(cfg, progress=progress_enabled())
        write_result(out, result, cfg.to_dict())
        write_train_report(out, result)
    if json_out:
        emit_json(result)
    else:
        asr = result["test"]["asr"]
        typer.echo(
            f"test accuracy {result['test']['accuracy']:.4f}"
            + (f", ASR {asr:.4f}" if asr is not None else "")
            + f" -> {result['model']}"
        )


def register(app: typer.Typer) -> None:
    app.command("train")(train)
