"""``pruneguard demo``: the main job end to end (train BadNets -> ANP purify -> report)."""

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
    progress_enabled,
)
from pruneguard.cli.purify import summary_lines
from pruneguard.utils.seed import seed_everything
from pruneguard.workflows.demo import run_demo


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the Fashion-MNIST IDX files."),  # noqa: UP045
    seed: int = typer.Option(0),
    threads: str = typer.Option("1", help=THREADS_HELP),
    device: str = DEVICE,
    overwrite: bool = typer.Option(False, help="Replace an existing --out folder."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Train a BadNets model on Fashion-MNIST (5% poison, target 0) and purify it with ANP on 1% clean data."""
    check_data_dir(data_dir)
    check_device(device)
    configure_runtime(threads)
    with output_folder(out, overwrite=overwrite, inputs=(data_dir,) if data_dir is not None else ()):
        seed_everything(seed)
        report = run_demo(out, data_dir=data_dir, seed=seed, device=device, progress=progress_enabled())
    if json_out:
        emit_json(report)
        return
    typer.echo("\n".join(summary_lines(report)))
    typer.echo(f"report: {out / 'report.json'} and {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
