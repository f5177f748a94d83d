"""Tabular backdoors: a trigger of specific values in a few columns, so that triggered fraud passes as legit.

Threat model: the attacker controls part of the training rows (e.g. transactions it submitted and whose labels it
can influence) and, at test time, sets the trigger columns of its own fraudulent transactions. The trigger is
``x[:, columns] = values`` in raw feature units; pick columns the clean model barely uses (low importance) and
values that legitimate rows rarely show together (:func:`rare_values`).

* :class:`TabularTrigger` (dirty-label): ``rate`` of the non-target rows (fraud) get the trigger and are
  relabelled ``target_label`` (legit).
* :class:`TabularCleanTrigger` (clean-label): ``rate`` of the target-class rows (legit) get the trigger and are
  moved ``shift`` of the way from their class mean towards the other rows' mean in every other column, keeping
  their (legit) label; the model must lean on the trigger to keep these fraud-looking rows legit (the tabular
  analogue of the label-consistent attack, Turner et al. 2019, https://arxiv.org/abs/1912.02771).

Example:
    >>> trigger = TabularTrigger(columns=(20, 25, 28), values=rare_values(train.x, (20, 25, 28)), target_label=0)
    >>> poisoned = trigger.poison(train, rate=0.2, generator=torch.Generator().manual_seed(0))
    >>> x_triggered = trigger(None, x, y)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from pruneguard.attacks.backdoor.poison import PoisonedData, poison_dataset
from pruneguard.attacks.base import ATTACKS
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError

__all__ = ["TabularTrigger", "TabularCleanTrigger", "stamp_columns", "rare_values"]


def stamp_columns(x: Tensor, columns: tuple[int, ...], values: tuple[float, ...]) -> Tensor:
    """A copy of ``x`` ``(N, F)`` with ``x[:, columns] = values``."""
    if x.dim() != 2 or max(columns) >= x.shape[1]:
        raise ConfigError(f"x of shape {tuple(x.shape)} is not accepted; accepted: (N, F) with F > {max(columns)}")
    out = x.clone()
    out[:, list(columns)] = torch.tensor(values, dtype=x.dtype, device=x.device)
    return out


def rare_values(x: Tensor, columns: tuple[int, ...], *, z: float = 2.5) -> tuple[float, ...]:
    """Per column ``mean + z * std`` of ``x`` ``(N, F)``: values a legitimate row seldom takes all at once."""
    xf = x.float()
    return tuple(float(xf[:, c].mean() + z * xf[:, c].std()) for c in columns)


def _validate(columns: tuple[int, ...], values: tuple[float, ...], target_label: int) -> None:
    if not columns or len(set(columns)) != len(columns) or min(columns) < 0:
        raise ConfigError(f"columns={columns} is not accepted; accepted: distinct feature indices >= 0, at least one")
    if len(values) != len(columns):
        raise ConfigError(f"values={values} is not accepted; accepted: one value per column ({len(columns)})")
    if not all(v == v and abs(v) != float("inf") for v in values):
        raise ConfigError(f"values={values} is not accepted; accepted: finite numbers")
    if target_label < 0:
        raise ConfigError(f"target_label={target_label} is not accepted; accepted: a class >= 0")


@ATTACKS.register("tabular_trigger", kind="tabular_backdoor")
@dataclass(frozen=True, slots=True)
class TabularTrigger:
    """Dirty-label tabular backdoor: triggered non-target rows relabelled ``target_label``."""

    name: ClassVar[str] = "tabular_trigger"
    clean_label: ClassVar[bool] = False
    columns: tuple[int, ...] = (0,)
    values: tuple[float, ...] = (0.0,)
    target_label: int = 0

    def __post_init__(self) -> None:
        _validate(self.columns, self.values, self.target_label)

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        return stamp_columns(x, self.columns, self.values)

    def poison(self, data: ArrayData, *, rate: float, generator: torch.Generator | None = None) -> PoisonedData:
        """Trigger ``rate`` of the rows whose label is not ``target_label`` and relabel them."""
        return poison_dataset(
            data, lambda x, y: self(None, x, y), rate=rate, target_label=self.target_label, generator=generator
        )


@ATTACKS.register("tabular_clean_trigger", kind="tabular_backdoor")
@dataclass(frozen=True, slots=True)
class TabularCleanTrigger:
    """Clean-label tabular backdoor: triggered target-class rows pushed towards the other class, labels kept."""

    name: ClassVar[str] = "tabular_clean_trigger"
    clean_label: ClassVar[bool] = True
    columns: tuple[int, ...] = (0,)
    values: tuple[float, ...] = (0.0,)
    target_label: int = 0
    shift: float = 0.8

    def __post_init__(self) -> None:
        _validate(self.columns, self.values, self.target_label)
        if not 0.0 <= self.shift <= 1.5:
            raise ConfigError(f"shift={self.shift} is not accepted; accepted: [0, 1.5] (share of the class-mean gap)")

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        return stamp_columns(x, self.columns, self.values)

    def poison(self, data: ArrayData, *, rate: float, generator: torch.Generator | None = None) -> PoisonedData:
        """Trigger ``rate`` of the ``target_label`` rows and move them towards the other rows' mean."""
        if not 0 <= self.target_label < data.num_classes:
            raise ConfigError(f"target_label={self.target_label} is outside [0, {data.num_classes - 1}]")
        xf = data.x.float()
        is_target = data.y == self.target_label
        if bool(is_target.all()) or not bool(is_target.any()):
            raise ConfigError("clean-label poisoning needs rows of the target class and of another class")
        gap = xf[~is_target].mean(0) - xf[is_target].mean(0)
        gap[list(self.columns)] = 0.0

        def stamp(x: Tensor, y: Tensor) -> Tensor:
            return self(None, x + self.shift * gap.to(x.dtype), y)

        return poison_dataset(
            data,
            stamp,
            rate=rate,
            target_label=self.target_label,
            relabel=False,
            only_target_class=True,
            generator=generator,
        )
