"""The model-description options, defined once for every command that takes ``--model``.

Use them as defaults in a command's signature, then pass :func:`model_description` of their values into the run
config (they match :class:`pruneguard.config_model.ModelDescriptionConfig`)::

    arch: Optional[str] = ARCH, arch_kwargs: str = ARCH_KWARGS, num_classes: Optional[int] = NUM_CLASSES, ...

``--arch module:factory`` imports user code; it is imported only because it was given on the command line.
"""

from __future__ import annotations

from typing import Any

import typer

from pruneguard.cli.common import parse_json_option

__all__ = [
    "ARCH",
    "ARCH_KWARGS",
    "NUM_CLASSES",
    "INPUT_SHAPE",
    "MEAN",
    "STD",
    "NORMALIZATION_INSIDE",
    "model_description",
]

ARCH = typer.Option(
    None,
    "--arch",
    help="Architecture of a file without pruneguard metadata (a plain state dict): a zoo name or "
    "package.module:factory (imported: it runs that code).",
)
ARCH_KWARGS = typer.Option("{}", "--arch-kwargs", help="JSON keyword arguments for --arch, e.g. '{\"width\": 0.5}'.")
NUM_CLASSES = typer.Option(None, "--num-classes", help="With --arch: number of classes (default: the dataset's).")
INPUT_SHAPE = typer.Option(
    None, "--input-shape", help="With --arch: input shape, e.g. 3,32,32 (default: the dataset's)."
)
MEAN = typer.Option(None, "--mean", help="With --arch: per-channel mean the model expects inputs normalised with.")
STD = typer.Option(None, "--std", help="With --arch: per-channel std the model expects inputs normalised with.")
NORMALIZATION_INSIDE = typer.Option(
    False, "--normalization-inside", help="With --arch: the model normalises its [0, 1] inputs itself."
)


def model_description(
    *,
    arch: str | None,
    arch_kwargs: str,
    num_classes: int | None,
    input_shape: str | None,
    mean: str | None,
    std: str | None,
    normalization_inside: bool,
) -> dict[str, Any]:
    """The options' values as run-config fields (``--arch-kwargs`` parsed; the rest validated by the config)."""
    return {
        "arch": arch,
        "arch_kwargs": parse_json_option("--arch-kwargs", arch_kwargs),
        "num_classes": num_classes,
        "input_shape": input_shape,
        "mean": mean,
        "std": std,
        "normalization_inside": normalization_inside,
    }
