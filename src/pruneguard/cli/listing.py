"""``pruneguard list``: what the registries hold."""

from __future__ import annotations

import typer

from pruneguard.attacks.base import ATTACKS
from pruneguard.cli.common import emit_json
from pruneguard.data.datasets import list_datasets
from pruneguard.errors import ConfigError
from pruneguard.models.registry import list_models

_KINDS = ("models", "datasets", "attacks")


def list_cmd(
    kind: str = typer.Argument("all", help="models, datasets, attacks or all."),
    pattern: str = typer.Option("*", help="Glob on the names, e.g. 'resnet*'."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """List registered models, datasets and attacks."""
    if kind not in _KINDS + ("all",):
        raise ConfigError(f"kind={kind!r} is not a registry; accepted: {', '.join(_KINDS)}, all")
    table = {
        "models": list_models(pattern),
        "datasets": list_datasets(pattern),
        "attacks": [f"{n} ({ATTACKS.meta(n).get('kind', '?')})" for n in ATTACKS.names(pattern)],
    }
    shown = table if kind == "all" else {kind: table[kind]}
    if json_out:
        emit_json(shown)
        return
    for name, items in shown.items():
        typer.echo(f"{name}: {', '.join(items) if items else '(none)'}")


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
