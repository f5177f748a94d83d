"""``pruneguard export``: write a model file as ONNX, checked with onnxruntime against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from pruneguard.cli.common import DEVICE, THREADS_HELP, check_device, configure_runtime, emit_json
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
from pruneguard.errors import ConfigError
from pruneguard.utils.seed import seed_everything
from pruneguard.workflows.export import ExportRunConfig, export_job


def summary_lines(result: dict[str, Any]) -> list[str]:
    c = result["check"]
    return [
        f"wrote {result['out']} (ONNX opset {result['opset']})",
        f"onnxruntime vs PyTorch on {c['inputs']}: max |logit difference| {c['max_abs_diff']:.2e}, "
        f"argmax agreement {c['argmax_agreement']:.2%}",
    ]


def export(
    model: Path = typer.Option(..., "--model", help="Model file (.safetensors from pruneguard, or a state dict)."),
    out: Path = typer.Option(..., "--out", help="Output file (.onnx)."),
    fmt: str = typer.Option("onnx", "--format", help="Output format: onnx."),
    dataset: Optional[str] = typer.Option(None, help="Dataset of the check (default: the model's)."),  # noqa: UP045
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the dataset files."),  # noqa: UP045
    n_check: int = typer.Option(256, help="Inputs the export is checked on."),
    opset: int = typer.Option(17, help="ONNX opset version."),
    seed: int = typer.Option(0),
    threads: str = typer.Option("1", help=THREADS_HELP),
    device: str = DEVICE,
    overwrite: bool = typer.Option(False, help="Replace an existing --out file."),
    trust_pickle: bool = typer.Option(False, help="Allow pickled model files (runs their code!)."),
    arch: Optional[str] = ARCH,  # noqa: UP045
    arch_kwargs: str = ARCH_KWARGS,
    num_classes: Optional[int] = NUM_CLASSES,  # noqa: UP045
    input_shape: Optional[str] = INPUT_SHAPE,  # noqa: UP045
    mean: Optional[str] = MEAN,  # noqa: UP045
    std: Optional[str] = STD,  # noqa: UP045
    normalization_inside: bool = NORMALIZATION_INSIDE,
    json_out: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Export a model to ONNX; the export is checked with onnxruntime against PyTorch before it is written."""
    cfg = validate_config(
        ExportRunConfig,
        dict(
            device=device,
            model=model,
            out=out,
            format=fmt,
            dataset=dataset,
            data_dir=data_dir,
            n_check=n_check,
            opset=opset,
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
    if out.exists() and not overwrite:
        raise ConfigError(f"--out={out} already exists; pass --overwrite to replace it")
    if out.exists() and not out.is_file():
        raise ConfigError(f"--out={out} exists and is not a file")
    check_device(cfg.device)
    configure_runtime(threads)
    seed_everything(seed)
    result = export_job(cfg)
    if json_out:
        emit_json(result)
    else:
        typer.echo("\n".join(summary_lines(result)))


def register(app: typer.Typer) -> None:
    app.command("export")(export)
