"""How a run config describes a model file that carries no (or not enough) pruneguard metadata.

One set of fields, shared by every command that takes ``--model`` (mixed into its run config): ``--arch`` (a zoo
name or ``package.module:factory``), ``--arch-kwargs``, and what the metadata would otherwise carry (number of
classes, input shape, mean/std, or normalisation inside the model). :func:`describe_model` in
:mod:`pruneguard.workflows.common` turns them, with the dataset's defaults, into a :class:`ModelMeta`.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

__all__ = ["ModelDescriptionConfig", "parse_numbers"]


def parse_numbers(v: Any, *, kind: type, accepted: str) -> Any:
    """``"3,32,32"`` or a list -> a tuple of ``kind``; None stays None; else a ValueError naming ``accepted``."""
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = [kind(s) for s in v.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"accepted: {accepted}") from None
    if isinstance(v, list | tuple) and v and all(isinstance(e, int | float) and math.isfinite(e) for e in v):
        if kind is int and not all(float(e).is_integer() for e in v):
            raise ValueError(f"accepted: {accepted}")
        return tuple(kind(e) for e in v)
    raise ValueError(f"accepted: {accepted}")


class ModelDescriptionConfig(BaseModel):
    """The model-description fields (a mixin for run configs; ``extra="forbid"`` comes from the run config).

    Without ``arch`` the model file must carry pruneguard metadata and the other fields must be unset. With it,
    unset fields come from ``--dataset``. ``normalization_inside`` says the model normalises its [0, 1] inputs
    itself; ``mean``/``std`` say it expects normalised inputs (a zoo model puts them in its first layer; a
    ``module:factory`` model gets them applied before its forward). A ``module:factory`` model without either is
    taken to normalise inside (its factory receives only ``num_classes`` and ``arch_kwargs``).
    """

    arch: str | None = None
    arch_kwargs: dict[str, Any] = Field(default_factory=dict)
    num_classes: int | None = Field(None, ge=2)
    input_shape: tuple[int, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalization_inside: bool = False

    @field_validator("input_shape", mode="before")
    @classmethod
    def _shape(cls, v: Any) -> Any:
        out = parse_numbers(v, kind=int, accepted="positive integers, comma-separated, e.g. 3,32,32")
        if out is not None and any(s <= 0 for s in out):
            raise ValueError("accepted: positive integers, comma-separated, e.g. 3,32,32")
        return out

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _stats(cls, v: Any) -> Any:
        return parse_numbers(v, kind=float, accepted="numbers, one per channel, comma-separated, e.g. 0.5,0.5,0.5")

    @model_validator(mode="after")
    def _description(self) -> ModelDescriptionConfig:
        given = [
            name
            for name, value in (
                ("--arch-kwargs", self.arch_kwargs),
                ("--num-classes", self.num_classes),
                ("--input-shape", self.input_shape),
                ("--mean", self.mean),
                ("--std", self.std),
                ("--normalization-inside", self.normalization_inside),
            )
            if value
        ]
        if self.arch is None and given:
            raise ValueError(f"{given[0]} describes a model built from --arch; give --arch too")
        if (self.mean is None) != (self.std is None):
            raise ValueError("--mean and --std go together (one number per input channel each)")
        if self.mean is not None and self.std is not None:
            if self.normalization_inside:
                raise ValueError("--normalization-inside and --mean/--std contradict each other; give one")
            if len(self.mean) != len(self.std):
                raise ValueError(f"--mean has {len(self.mean)} values but --std has {len(self.std)}")
            if any(s <= 0 for s in self.std):
                raise ValueError(f"--std={','.join(map(str, self.std))}: every value must be > 0")
        return self

    def description(self) -> dict[str, Any]:
        """The fields as a plain dict (what :func:`pruneguard.workflows.common.describe_model` takes)."""
        return {
            "arch": self.arch,
            "arch_kwargs": dict(self.arch_kwargs),
            "num_classes": self.num_classes,
            "input_shape": self.input_shape,
            "mean": self.mean,
            "std": self.std,
            "normalization_inside": self.normalization_inside,
        }
