"""CLI plumbing: logging, output folders, writing results. No ML logic here."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch
import typer
import yaml

from pruneguard.errors import ConfigError
from pruneguard.utils.allocator import tune_allocator
from pruneguard.utils.device import DEVICE_ACCEPTED, parse_threads, resolve_device, set_threads
from pruneguard.utils.io import atomic_write_json, atomic_write_text, output_folder
from pruneguard.utils.modes import layout_setting

__all__ = [
    "setup_logging",
    "output_folder",
    "check_data_dir",
    "write_result",
    "progress_enabled",
    "emit_json",
    "State",
    "DEVICE",
    "check_device",
]


class State:
    """Global CLI flags (set by the app callback)."""

    verbose: int = 0
    quiet: bool = False
    debug: bool = False


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


def progress_enabled() -> bool:
    return sys.stderr.isatty() and not State.quiet


def check_data_dir(data_dir: Path | None) -> None:
    """``--data-dir`` must be an existing folder: a typo would otherwise fall back silently to another copy."""
    if data_dir is not None and not data_dir.is_dir():
        what = "is not a folder" if data_dir.exists() else "does not exist"
        raise ConfigError(f"--data-dir={data_dir} {what}; accepted: an existing folder with the dataset files")


def write_result(out: Path, result: dict[str, Any], config: dict[str, Any]) -> None:
    atomic_write_json(out / "result.json", result)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


THREADS_HELP = "torch CPU threads: a number, or auto (times 1 vs all cores now and takes the faster)."


# the one --device option of every command that runs a model (use it as the default in the command's signature)
DEVICE = typer.Option(
    "auto",
    "--device",
    help=f"Where the model runs: {DEVICE_ACCEPTED} (auto: the first CUDA device, else MPS, else the CPU).",
)


def check_device(name: str) -> torch.device:
    """``--device`` as this machine's device; one that is malformed or absent here is a one-line ConfigError."""
    return resolve_device(name, param="--device")


def configure_runtime(threads: str | int) -> int:
    """Thread count, glibc heap settings that spare each iteration its page faults (see utils.allocator), and the
    CPU memory layout setting checked before any work (see utils.modes.fast_layout)."""
    layout_setting()
    n = parse_threads(threads)
    set_threads(n)
    tune_allocator()
    return n


def parse_json_option(name: str, text: str) -> dict[str, Any]:
    """A JSON object given on the command line; anything else is a one-line ConfigError naming the option."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}={text!r} is not valid JSON ({exc.msg}); accepted: a JSON object") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name}={text!r} is not a JSON object")
    return value
