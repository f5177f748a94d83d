"""Recipe and run-config overrides: ``--set path=value`` and YAML files, validated with field-path errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pruneguard.errors import ConfigError

__all__ = [
    "parse_set",
    "apply_overrides",
    "load_recipe_file",
    "validation_error",
    "build",
    "FieldError",
    "MAX_CONFIG_BYTES",
]

MAX_CONFIG_BYTES = 1 << 20  # a recipe or run config is a few kB; anything larger is not one


class FieldError(ConfigError):
    """A config field (dotted path, e.g. ``recipe.anp.eps``) has a value outside what it accepts."""

    def __init__(self, field: str, value: Any, message: str) -> None:
        self.field, self.value, self.detail = field, value, message
        super().__init__(f"{field}={value!r}: {message}")


def _scalar(text: str) -> Any:
    """A ``--set`` value: YAML flow syntax (numbers, true/false, null, [lists], {maps}) or else the plain string."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"--set value {text!r} is not a finite number")
    return value


def parse_set(item: str) -> tuple[list[str], Any]:
    """``"anp.eps=0.3"`` -> ``(["anp", "eps"], 0.3)``."""
    path, sep, text = item.partition("=")
    keys = [k.strip() for k in path.split(".")]
    if not sep or not all(keys) or any(not k.replace("_", "").isalnum() for k in keys):
        raise ConfigError(
            f"--set {item!r} is not accepted; accepted: FIELD=VALUE with FIELD a dotted path such as "
            "recipe.anp.iterations=500"
        )
    return keys, _scalar(text)


def apply_overrides(data: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """A copy of ``data`` (nested dicts) with each ``--set`` item applied in order; an intermediate that is not a
    mapping yet (a recipe given by name) must be expanded by the caller first."""
    out = _deep_copy(data)
    for item in items:
        keys, value = parse_set(item)
        node = out
        for i, k in enumerate(keys[:-1]):
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(keys[: i + 1])} is not a group of fields")
            node = child
        node[keys[-1]] = value
    return out


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


class _AliasRefused(Exception):
    pass


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader with aliases refused: a config never needs them, and nested aliases expand exponentially."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            raise _AliasRefused
        return super().compose_node(parent, index)


def load_recipe_file(path: Path, what: str = "--config") -> dict[str, Any]:
    """A YAML mapping from ``path`` (safe loader: no tags, no code), size-limited."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what}={p} is not a file")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what}={p} is larger than {MAX_CONFIG_BYTES} bytes; accepted: a YAML config")
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader without aliases
    except _AliasRefused:
        raise ConfigError(f"{what}={p} uses YAML aliases (*name); accepted: a plain YAML mapping") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{what}={p} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what}={p} holds a {type(data).__name__}; accepted: a YAML mapping of fields")
    return data


def _fields_at(cls: type[BaseModel] | None, path: list[str]) -> list[str]:
    """The field names of the (nested) model at ``path`` below ``cls``."""
    for key in path:
        field = cls.model_fields.get(key) if cls is not None else None
        ann = field.annotation if field is not None else None
        cls = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(cls.model_fields) if cls is not None else []


def validation_error(
    exc: ValidationError, prefix: str = "", cls: type[BaseModel] | None = None
) -> FieldError | ConfigError:
    """The first problem of a pydantic error as one line naming the field's dotted path, its value and the rule."""
    err = exc.errors()[0]
    msg = str(err["msg"]).removeprefix("Value error, ")
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    if not loc or isinstance(err.get("input"), dict):  # a rule across fields: its message names them
        return ConfigError(msg)
    field = prefix + ".".join(loc)
    if err["type"] == "extra_forbidden":
        parent = ".".join(loc[:-1])
        accepted = _fields_at(cls, loc[:-1])
        return ConfigError(
            f"{field} is not a field{' of ' + prefix + parent if parent else ''}; accepted: "
            + (", ".join(accepted) if accepted else "see pruneguard.recipes.schema")
        )
    return FieldError(field, err.get("input"), msg)


def build(cls: type[BaseModel], data: dict[str, Any], prefix: str = "") -> Any:
    try:
        return cls(**data)
    except ValidationError as exc:
        raise validation_error(exc, prefix, cls) from None
