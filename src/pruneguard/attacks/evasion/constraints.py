"""Tabular feasibility constraints: what an attacker who edits a transaction can and cannot change.

A YAML file names columns by their CSV header:

```yaml
immutable: [Time, account_age]        # never changed (the account's age, the merchant's country)
bounds: {Amount: [0, null]}           # [low, high]; null = unbounded (an amount is never negative)
integer: [n_items]                    # rounded to whole numbers
categorical:                          # one-hot groups: exactly one column is 1
  country: [country_fr, country_de, country_us]
```

Attacks project onto them: :func:`project_continuous` after every step (immutable columns reset, bounds
clamped), :func:`project_discrete` once at the end (integers rounded inside the allowed box, each one-hot group
set to its largest entry, reverted to the original category when the switch leaves the box).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from pruneguard.errors import ConfigError

__all__ = ["TabularConstraints", "load_constraints", "project_continuous", "project_discrete"]

_KEYS = ("immutable", "bounds", "integer", "categorical")


@dataclass(frozen=True, slots=True)
class TabularConstraints:
    """Resolved constraints over ``num_features`` columns (indices into the feature vector).

    ``low``/``high`` hold one bound per feature (``-inf``/``inf`` when free); ``onehot`` holds the column groups
    of the categorical features.
    """

    num_features: int
    immutable: tuple[int, ...] = ()
    integer: tuple[int, ...] = ()
    onehot: tuple[tuple[int, ...], ...] = ()
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.num_features < 1:
            raise ConfigError(f"num_features={self.num_features} is not accepted; accepted: an integer >= 1")
        cols = [*self.immutable, *self.integer, *(c for g in self.onehot for c in g)]
        bad = [c for c in cols if not 0 <= c < self.num_features]
        if bad:
            raise ConfigError(f"constraint columns {bad} are outside [0, {self.num_features - 1}]")
        for bound, name in ((self.low, "low"), (self.high, "high")):
            if bound is not None and len(bound) != self.num_features:
                raise ConfigError(f"{name} has {len(bound)} entries; accepted: one per feature ({self.num_features})")
        lo, hi = self.bounds()
        if bool((lo > hi).any()):
            raise ConfigError(f"bounds are empty for columns {torch.nonzero(lo > hi).flatten().tolist()} (low > high)")
        if any(len(g) < 2 for g in self.onehot):
            raise ConfigError("a categorical (one-hot) group needs at least 2 columns")

    def bounds(self) -> tuple[Tensor, Tensor]:
        """Per-feature ``(low, high)`` as float tensors ``(F,)``."""
        f = self.num_features
        lo = torch.tensor(self.low) if self.low is not None else torch.full((f,), -math.inf)
        hi = torch.tensor(self.high) if self.high is not None else torch.full((f,), math.inf)
        return lo.float(), hi.float()

    def mutable(self) -> Tensor:
        """Bool ``(F,)``: columns an attacker may change."""
        m = torch.ones(self.num_features, dtype=torch.bool)
        m[list(self.immutable)] = False
        return m

    def describe(self) -> dict[str, Any]:
        """The constraints by column name (for reports)."""
        labels = self.names or tuple(str(i) for i in range(self.num_features))
        name = labels.__getitem__
        lo, hi = self.bounds()
        bounded = {
            name(i): [None if math.isinf(a) else a, None if math.isinf(b) else b]
            for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True))
            if not (math.isinf(a) and math.isinf(b))
        }
        return {
            "immutable": [name(i) for i in self.immutable],
            "bounds": bounded,
            "integer": [name(i) for i in self.integer],
            "categorical": [[name(i) for i in g] for g in self.onehot],
        }


def _columns(value: Any, key: str, names: Sequence[str], path: Path) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"--constraints={path}: {key} must be a list of column names")
    unknown = [v for v in value if v not in names]
    if unknown:
        raise ConfigError(f"--constraints={path}: {key} names unknown columns {unknown}; columns: {', '.join(names)}")
    return [list(names).index(v) for v in value]


def _bound(v: Any, path: Path, col: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ConfigError(f"--constraints={path}: bounds of {col!r} must be numbers or null, not {v!r}")
    return float(v)


def load_constraints(path: str | Path, names: Sequence[str]) -> TabularConstraints:
    """Read a constraints YAML file against the feature columns ``names`` (the CSV header minus the label)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--constraints={path} does not exist or is not a file")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--constraints={path} is not readable YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or set(doc) - set(_KEYS):
        extra = sorted(set(doc) - set(_KEYS)) if isinstance(doc, dict) else doc
        raise ConfigError(f"--constraints={path}: unknown keys {extra}; accepted: {', '.join(_KEYS)}")
    f = len(names)
    low, high = [-math.inf] * f, [math.inf] * f
    bounds = doc.get("bounds") or {}
    if not isinstance(bounds, dict):
        raise ConfigError(f"--constraints={path}: bounds must map column names to [low, high]")
    for col, pair in bounds.items():
        (i,) = _columns([col], "bounds", names, path)
        if not isinstance(pair, list) or len(pair) != 2:
            raise ConfigError(f"--constraints={path}: bounds of {col!r} must be [low, high], not {pair!r}")
        a, b = (_bound(v, path, col) for v in pair)
        low[i], high[i] = (-math.inf if a is None else a), (math.inf if b is None else b)
    groups = doc.get("categorical") or {}
    if not isinstance(groups, dict):
        raise ConfigError(f"--constraints={path}: categorical must map a feature name to its one-hot columns")
    return TabularConstraints(
        num_features=f,
        immutable=tuple(_columns(doc.get("immutable") or [], "immutable", names, path)),
        integer=tuple(_columns(doc.get("integer") or [], "integer", names, path)),
        onehot=tuple(tuple(_columns(cols, f"categorical.{k}", names, path)) for k, cols in groups.items()),
        low=tuple(low),
        high=tuple(high),
        names=tuple(names),
    )


def project_continuous(x_adv: Tensor, x: Tensor, lo: Tensor, hi: Tensor, mutable: Tensor) -> Tensor:
    """Clamp ``x_adv`` ``(N, F)`` into the per-row box ``[lo, hi]`` and reset immutable columns to ``x``."""
    out = torch.maximum(torch.minimum(x_adv, hi), lo)
    return torch.where(mutable.to(x.device).view(1, -1), out, x)


def project_discrete(x_adv: Tensor, x: Tensor, lo: Tensor, hi: Tensor, c: TabularConstraints) -> Tensor:
    """Round integer columns inside ``[lo, hi]`` (or keep ``x`` where no integer fits) and make each one-hot
    group one-hot at its largest entry, keeping ``x``'s category where the switch leaves ``[lo, hi]``."""
    out = x_adv.clone()
    if c.integer:
        i = list(c.integer)
        lo_i, hi_i = torch.ceil(lo[:, i] - 1e-6), torch.floor(hi[:, i] + 1e-6)
        r = torch.minimum(torch.maximum(torch.round(out[:, i]), lo_i), hi_i)
        out[:, i] = torch.where(lo_i <= hi_i, r, x[:, i])
    for group in c.onehot:
        g = list(group)
        hot = torch.zeros_like(out[:, g]).scatter_(1, out[:, g].argmax(1, keepdim=True), 1.0)
        inside = ((hot >= lo[:, g] - 1e-6) & (hot <= hi[:, g] + 1e-6)).all(1, keepdim=True)
        out[:, g] = torch.where(inside, hot, x[:, g])
    mutable = c.mutable().to(x.device).view(1, -1)
    return torch.where(mutable, out, x)
