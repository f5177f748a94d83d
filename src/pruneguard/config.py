"""Run configs (pydantic v2, ``extra="forbid"``) for the user-level jobs; written next to every result."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pruneguard.errors import ConfigError
from pruneguard.recipes import DEFAULT_RECIPE, Recipe, get_recipe
from pruneguard.utils.device import DEVICE_ACCEPTED, check_device_name

__all__ = ["RunConfig", "PurifyConfig", "validate_config"]


class RunConfig(BaseModel):
    """Fields every job has: ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``) is where the model,
    its batches and the random draws made on them live; the data stays on the host and moves per batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        try:
            return check_device_name(v)
        except ConfigError:
            raise ValueError(f"accepted: {DEVICE_ACCEPTED}") from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def validate_config(cls: type[RunConfig], values: dict[str, Any]) -> Any:
    """Build ``cls`` from ``values``; the first problem becomes a one-line ``ConfigError`` naming the option."""
    try:
        return cls(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a cross-field rule: its message names the options
            raise ConfigError(str(err["msg"]).removeprefix("Value error, ")) from None
        field = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "config"
        value = err.get("input")
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{field}={value!r}: {msg}") from None


class PurifyConfig(RunConfig):
    """``pruneguard purify``: the model and its data, the defender's clean data, and the recipe to run.

    ``recipe`` is a :class:`~pruneguard.recipes.Recipe` or the name of a shipped one. ``clean_fraction`` (of the
    training split) or ``clean_samples`` (a count, wins) sizes the clean data; the recipe's
    ``validation_fraction`` of it is held out for the accuracy guard. ``eval_attack``/``target_label`` measure an
    attack success rate on the test set for benchmarking only: no step sees it. ``threads`` is torch's CPU thread
    count (``auto``: timed at start and before ANP, see :func:`pruneguard.utils.device.probe_threads`). ``onnx``
    also writes the purified model as ONNX (``purified.onnx``), checked with onnxruntime against PyTorch on 256
    test images.
    """

    model: Path
    out: Path
    dataset: str | None = None
    data_dir: Path | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] = Field(default_factory=dict)
    clean_fraction: float | None = Field(0.01, gt=0.0, le=1.0, allow_inf_nan=False)
    clean_samples: int | None = Field(None, ge=2)
    seed: int = Field(0, ge=-(2**63), lt=2**64)  # what torch.manual_seed accepts
    recipe: Recipe = Field(default_factory=lambda: get_recipe(DEFAULT_RECIPE))
    eval_attack: str | None = None
    target_label: int | None = Field(None, ge=0)
    checkpoint_every: int = Field(100, ge=1)
    trust_pickle: bool = False
    policy: Path | None = None
    onnx: bool = False
    threads: int | Literal["auto"] = 1

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        if isinstance(v, int | str) and not isinstance(v, bool) and str(v).strip().isdigit() and int(v) >= 1:
            return int(v)
        raise ValueError("accepted: an integer >= 1, or auto")

    @field_validator("recipe", mode="before")
    @classmethod
    def _recipe(cls, v: Any) -> Any:
        return get_recipe(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _checks(self) -> PurifyConfig:
        if self.out.expanduser().resolve() == self.model.expanduser().resolve():
            raise ValueError(f"out={self.out} is the input model; choose another folder (inputs are never overwritten)")
        return self


class TrainRunConfig(RunConfig):
    """``pruneguard train``: a clean or backdoored model on a registered dataset, with a held-out split."""

    out: Path
    dataset: str = "fashion_mnist"
    data_dir: Path | None = None
    arch: str = "small_cnn"
    width: float = Field(1.0, gt=0.0, le=64.0, allow_inf_nan=False)  # 64x channels is already ~100k per layer
    attack: str | None = None
    attack_params: dict[str, float | int | bool | str] = Field(default_factory=dict)
    poison_rate: float = Field(0.05, gt=0.0, le=1.0)
    target_label: int = Field(0, ge=0)
    holdout_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(0.05, gt=0.0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    augment: bool = True
    seed: int = Field(0, ge=-(2**63), lt=2**64)  # what torch.manual_seed accepts
    resume: bool = False
