"""``pruneguard download``: fetch a dataset into the user cache with SHA-256 verification."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pruneguard.data.download import SOURCES, download_dataset
from pruneguard.errors import ConfigError


def download(
    name: str = typer.Argument(..., help="fashion_mnist, mnist or cifar10."),
    dest: Optional[Path] = typer.Option(None, help="Target folder (default: ~/.cache/pruneguard/NAME)."),  # noqa: UP045
    base_url: Optional[str] = typer.Option(None, help="Mirror to use instead of the official ones."),  # noqa: UP045
) -> None:
    """Download a dataset (resumable; every file is checked against its published SHA-256)."""
    if name not in SOURCES:
        raise ConfigError(f"dataset={name!r} cannot be downloaded; accepted: {', '.join(sorted(SOURCES))}")
    path = download_dataset(name, dest, base_url=base_url, progress=True)
    typer.echo(f"{name}: {path}")


def register(app: typer.Typer) -> None:
    app.command("download")(download)
