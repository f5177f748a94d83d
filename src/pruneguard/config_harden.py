"""Run configs of ``pruneguard harden`` and ``pruneguard attack`` (pydantic v2, ``extra="forbid"``).

They follow :mod:`pruneguard.config`: build them with :func:`pruneguard.config.validate_config` so the first
problem becomes a one-line ``ConfigError`` naming the option.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pruneguard.config import RunConfig
from pruneguard.config_model import ModelDescriptionConfig

__all__ = ["HardenConfig", "AttackRunConfig"]

_EPS_SWEEP_HELP = "comma-separated numbers > 0, e.g. 0.025,0.05,0.1,0.2"


def _same_path(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


class HardenConfig(RunConfig, ModelDescriptionConfig):
    """``pruneguard harden``: baseline -> iterative prune / fine-tune -> re-evaluate -> (int8) -> report.

    Data: a registered dataset (``--dataset``, or the one named in the model file) or a CSV file (``--csv`` with
    ``--label``). With ``--csv`` and no ``--model``, a small MLP is trained first (``train_epochs``) on the
    CSV's training split minus a held-out part. With a rare class (under 20% of rows) or ``positive_label``,
    that class is also scored on its own at false-positive rate ``fpr``, and attacked as a fraudster would:
    only its rows, towards the other class, inside the ``constraints`` file. Budgets (``eps``, ``eps_sweep``)
    are in [0, 1] pixel units for images and in standard deviations of each feature for tabular data.
    """

    out: Path
    model: Path | None = None
    dataset: str | None = None
    data_dir: Path | None = None
    csv: Path | None = None
    label: str | None = None
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    train_epochs: int = Field(30, ge=1)
    holdout_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    target_sparsity: float = Field(0.5, gt=0.0, lt=1.0, allow_inf_nan=False)
    step: float = Field(0.1, gt=0.0, lt=1.0, allow_inf_nan=False)
    finetune_epochs: int = Field(1, ge=0)
    finetune_lr: float = Field(0.01, gt=0.0, allow_inf_nan=False)
    batch_size: int = Field(128, ge=2)
    structured: bool = False
    adv_train: Literal["pgd", "trades"] | None = None
    adv_steps: int = Field(7, ge=1)
    trades_beta: float = Field(6.0, ge=0.0, allow_inf_nan=False)
    quantize: Literal["int8"] | None = None
    onnx: bool = False
    max_acc_drop: float = Field(0.05, ge=0.0, lt=1.0, allow_inf_nan=False)
    robust_stop: bool = True
    eps: float = Field(0.1, gt=0.0, allow_inf_nan=False)
    norm: Literal["linf", "l2"] = "linf"
    pgd_steps: int = Field(20, ge=1)
    square_queries: int = Field(1000, ge=0)
    eps_sweep: tuple[float, ...] | None = None
    n_eval: int = Field(500, ge=2)
    clean_samples: int = Field(512, ge=2)
    feature_keep: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    feature_importance: Literal["gradient", "weight"] = "gradient"
    positive_label: str | None = None
    fpr: float = Field(0.01, gt=0.0, lt=1.0, allow_inf_nan=False)
    constraints: Path | None = None
    policy: Path | None = None
    seed: int = Field(0, ge=-(2**63), lt=2**64)  # what torch.manual_seed accepts
    resume: bool = False
    trust_pickle: bool = False

    @field_validator("eps_sweep", mode="before")
    @classmethod
    def _sweep(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, str):
            try:
                v = tuple(float(s) for s in v.split(",") if s.strip())
            except ValueError:
                raise ValueError(f"accepted: {_EPS_SWEEP_HELP}") from None
        if (
            isinstance(v, list | tuple)
            and v
            and all(isinstance(e, int | float) and math.isfinite(e) and e > 0 for e in v)
        ):
            return tuple(sorted({float(e) for e in v}))
        raise ValueError(f"accepted: {_EPS_SWEEP_HELP}")

    @model_validator(mode="after")
    def _checks(self) -> HardenConfig:
        if self.csv is not None and self.dataset is not None:
            raise ValueError("give either --csv (with --label) or --dataset, not both")
        if (self.csv is None) != (self.label is None):
            raise ValueError("--csv and --label go together: the CSV file and its label column")
        if self.csv is not None and self.arch is not None:
            raise ValueError("--arch describes a --model file of a registered dataset; with --csv drop it")
        if self.csv is None and self.model is None:
            raise ValueError("--model is required (only --csv can train a small MLP itself)")
        if self.step > self.target_sparsity:
            raise ValueError(f"--step={self.step} is larger than --target-sparsity={self.target_sparsity}")
        if self.adv_train is not None and self.norm != "linf":
            raise ValueError("--adv-train fine-tunes against L-inf attacks; use --norm linf with it")
        if self.feature_keep is not None and self.structured:
            raise ValueError("--feature-keep combines with weight pruning; drop --structured to use it")
        if self.csv is None and (self.positive_label is not None or self.constraints is not None):
            raise ValueError("--positive-label and --constraints are for tabular data: give --csv with them")
        inputs = [(self.model, "--model"), (self.csv, "--csv"), (self.policy, "--policy")]
        for path, name in [*inputs, (self.constraints, "--constraints")]:
            if path is not None and _same_path(self.out, path):
                raise ValueError(f"--out={self.out} is the input {name}; choose another folder")
        return self


class AttackRunConfig(RunConfig, ModelDescriptionConfig):
    """``pruneguard attack``: one registered evasion attack against a model file, on its dataset's test split.

    The model-description fields (``arch``, ...) come from :class:`ModelDescriptionConfig`.
    ``steps``, ``step_size``, ``queries``, ``restarts`` and ``version`` are passed to the attack only when
    given (an option the attack does not take is an error). ``source`` is the surrogate model of ``transfer``.
    """

    model: Path
    out: Path
    attack: str = "pgd"
    dataset: str | None = None
    data_dir: Path | None = None
    eps: float = Field(0.1, gt=0.0, allow_inf_nan=False)
    norm: Literal["linf", "l2"] = "linf"
    steps: int | None = Field(None, ge=1)
    step_size: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    restarts: int | None = Field(None, ge=1)
    queries: int | None = Field(None, ge=1)
    version: str | None = None
    source: Path | None = None
    n_samples: int = Field(1000, ge=1)
    batch_size: int = Field(256, ge=1)
    seed: int = Field(0, ge=-(2**63), lt=2**64)  # what torch.manual_seed accepts
    trust_pickle: bool = False

    @model_validator(mode="after")
    def _checks(self) -> AttackRunConfig:
        if _same_path(self.out, self.model):
            raise ValueError(f"--out={self.out} is the input model; choose another folder")
        if (self.attack == "transfer") != (self.source is not None):
            raise ValueError("--attack transfer needs --source (the surrogate model file), and --source needs it")
        return self
