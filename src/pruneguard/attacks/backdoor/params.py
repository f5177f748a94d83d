"""Type and size checks shared by the backdoor attacks' configs, whose values come from the command line
(``--attack-params``) or from an untrusted model file's metadata: a wrong type, NaN or a huge trigger size is a
one-line ``ConfigError`` before anything is allocated."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from pruneguard.errors import ConfigError

__all__ = ["check_param_types", "MAX_TRIGGER_SIZE"]

MAX_TRIGGER_SIZE = 64  # pixels: the largest images pruneguard handles are 64x64

_ACCEPTED = {
    "int": "an integer",
    "float": "a finite number",
    "str": "a string",
    "bool": "true or false",
}


def _ok(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "str":
        return isinstance(value, str)
    return isinstance(value, bool)


def check_param_types(obj: Any, *, sizes: tuple[str, ...] = ("patch_size",)) -> None:
    """Check every field of the attack config ``obj`` annotated ``int``, ``float``, ``str`` or ``bool`` (optionally
    ``| None``) against its annotation; fields named in ``sizes`` must also be at most ``MAX_TRIGGER_SIZE``."""
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        annotation = str(f.type).replace(" ", "")
        optional = annotation.endswith("|None")
        kind = annotation.removesuffix("|None")
        value = getattr(obj, f.name)
        if kind not in _ACCEPTED or (optional and value is None):
            continue
        if not _ok(kind, value):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            accepted = _ACCEPTED[kind] + (" or null" if optional else "")
            raise ConfigError(f"{f.name}={shown} is not accepted; accepted: {accepted}")
        if f.name in sizes and value > MAX_TRIGGER_SIZE:
            raise ConfigError(f"{f.name}={value} is not accepted; accepted: at most {MAX_TRIGGER_SIZE} pixels")
