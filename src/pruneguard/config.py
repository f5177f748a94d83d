"""Run configs (pydantic v2, ``extra="forbid"``) for the user-level jobs; written next to every result."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pruneguard.errors import ConfigError

__all__ = ["RunConfig", "PurifyConfig", "validate_config"]


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

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
    """``pruneguard purify``: ANP on the defender's clean split, prune, optionally fine-tune, evaluate."""

    model: Path
    out: Path
    dataset: str | None = None
    data_dir: Path | None = None
    clean_fraction: float | None = Field(0.01, gt=0.0, le=1.0)
    clean_samples: int | None = Field(None, ge=2)
    seed: int = Field(0, ge=-(2**63), lt=2**64)  # what torch.manual_seed accepts
    eps: float = Field(0.4, ge=0.0, le=1.0)
    anp_steps: int = Field(1, ge=1)
    alpha: float = Field(0.2, ge=0.0, le=1.0)
    iterations: int = Field(2000, ge=1)
    batch_size: int = Field(128, ge=2)
    mask_lr: float = Field(0.2, gt=0.0, allow_inf_nan=False)
    clip_noise: bool = False
    anp_fast: bool = False
    augment: bool = True
    anp_target: int | Literal["auto", "reversal", "combined", "vote"] | None = None
    vote_tiebreak: Literal["reference", "strongest"] = "reference"
    threshold: float | Literal["auto"] = 0.2
    prune_count: int | None = Field(None, ge=0)
    prune_fraction: float | None = Field(None, ge=0.0, lt=1.0)
    max_acc_drop: float = Field(0.02, ge=0.0, lt=1.0)
    cap_acc_drop: float | None = Field(None, ge=0.0, lt=1.0)
    finetune_epochs: int = Field(0, ge=0)
    finetune_lr: float = Field(0.01, gt=0.0, allow_inf_nan=False)
    unlearn: bool = False
    unlearn_steps: int = Field(400, ge=1)
    unlearn_epochs: int = Field(5, ge=1)
    unlearn_lr: float = Field(0.01, gt=0.0, allow_inf_nan=False)
    unlearn_trigger: Literal["patch", "blend", "both"] = "patch"
    unlearn_rounds: int = Field(1, ge=1)
    unlearn_distill: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    unlearn_teacher: Literal["pruned", "recalibrated"] = "pruned"
    unlearn_distill_suppress: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    unlearn_distill_augment: bool = False
    unlearn_adv_eps: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    eval_attack: str | None = None
    target_label: int | None = Field(None, ge=0)
    checkpoint_every: int = Field(100, ge=1)
    resume: bool = False
    trust_pickle: bool = False
    arch: str | None = None
    arch_kwargs: dict[str, Any] = Field(default_factory=dict)
    policy: Path | None = None

    @field_validator("anp_target", mode="before")
    @classmethod
    def _anp_target(cls, v: Any) -> Any:
        if v is None or v in ("auto", "reversal", "combined", "vote") or isinstance(v, int):
            if isinstance(v, int) and v < 0:
                raise ValueError("accepted: 'none', 'auto', 'reversal', 'combined', 'vote' or a class index >= 0")
            return v
        if isinstance(v, str):
            if v.lower() == "none":
                return None
            if v.isdigit():
                return int(v)
        raise ValueError("accepted: 'none', 'auto', 'reversal', 'combined', 'vote' or a class index >= 0")

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "auto":
            try:
                v = float(v)
            except ValueError:
                raise ValueError("accepted: a number in [0, 1] or 'auto'") from None
        if isinstance(v, float | int) and not 0.0 <= float(v) <= 1.0:
            raise ValueError("accepted: a number in [0, 1] or 'auto'")
        return v

    @model_validator(mode="after")
    def _checks(self) -> PurifyConfig:
        if self.prune_count is not None and self.prune_fraction is not None:
            raise ValueError("give at most one of --prune-count and --prune-fraction")
        if self.unlearn_distill == 0 and (
            self.unlearn_teacher != "pruned" or self.unlearn_distill_suppress > 0 or self.unlearn_distill_augment
        ):
            raise ValueError(
                f"--unlearn-teacher={self.unlearn_teacher} / --unlearn-distill-suppress="
                f"{self.unlearn_distill_suppress} / --unlearn-distill-augment={self.unlearn_distill_augment} "
                "shape the distillation; they need --unlearn-distill > 0"
            )
        if self.vote_tiebreak != "reference" and self.anp_target != "vote":
            raise ValueError(
                f"--vote-tiebreak={self.vote_tiebreak} breaks a tie of --anp-target vote; "
                f"it needs --anp-target vote (got {self.anp_target})"
            )
        if self.out.expanduser().resolve() == self.model.expanduser().resolve():
            raise ValueError(
                f"--out={self.out} is the input model; choose another folder (inputs are never overwritten)"
            )
        return self

    def anp_kwargs(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "steps": self.anp_steps,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "batch_size": self.batch_size,
            "lr": self.mask_lr,
            "clip_noise": self.clip_noise,
            "fast": self.anp_fast,
            "augment": self.augment,
            "seed": self.seed,
            "checkpoint_every": self.checkpoint_every,
            "target_class": self.anp_target if isinstance(self.anp_target, int) else None,
        }


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
