"""The Pruner protocol, the serialisable PruningPlan, the PRUNERS registry and mask application.

A pruner's ``plan()`` only decides *what* to prune and never touches the model. Application is separate:

- :func:`apply_plan_` installs a weight-granularity plan's boolean masks through ``torch.nn.utils.prune``
  (``weight_orig`` parameter + ``weight_mask`` buffer + a forward pre-hook), so pruned weights stay zero while
  the model is fine-tuned. Re-applying a plan to a masked module combines the masks (logical AND).
- :func:`make_permanent_` bakes the masks into plain ``weight`` parameters and removes the hooks.
- Channel plans are applied by structural surgery, ``pruneguard.pruning.structured.remove_channels``.

Masks are ``True`` where a weight is *kept*. Prunable layers are every ``Conv1d/2d/3d`` and ``Linear``; the
*final classifier* is the last of them in registration order (the output layer of every zoo model).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.registry import Registry

__all__ = [
    "Pruner",
    "PruningPlan",
    "PRUNERS",
    "GRANULARITIES",
    "prunable_modules",
    "final_layer_name",
    "effective_weight",
    "refresh_masked_weights_",
    "apply_plan_",
    "make_permanent_",
    "is_masked",
    "sparsity",
    "layer_sparsity",
]

GRANULARITIES = ("weight", "channel", "neuron")
PLAN_FORMAT = "pruneguard-plan/1"
_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@runtime_checkable
class Pruner(Protocol):
    """Decides what to prune. ``plan`` never mutates ``model``; ``data`` is the defender's clean data (or a
    batch / loader for pruners that trace the model), ignored by data-free pruners."""

    name: ClassVar[str]

    def plan(self, model: nn.Module, data: Any = None) -> PruningPlan: ...


PRUNERS: Registry[type] = Registry("pruner")


def _pack_mask(mask: Tensor) -> dict[str, Any]:
    bits = np.packbits(mask.detach().cpu().flatten().numpy().astype(np.bool_))
    return {"shape": list(mask.shape), "bits": base64.b64encode(bits.tobytes()).decode("ascii")}


def _unpack_mask(entry: dict[str, Any]) -> Tensor:
    shape = [int(s) for s in entry["shape"]]
    n = int(np.prod(shape)) if shape else 1
    raw = np.frombuffer(base64.b64decode(entry["bits"]), dtype=np.uint8)
    if raw.size * 8 < n:
        raise IncompatibleModelError(f"a plan mask holds {raw.size * 8} bits but shape {shape} needs {n}")
    bits = np.unpackbits(raw, count=n).astype(np.bool_)
    return torch.from_numpy(bits.copy()).reshape(shape)


@dataclass
class PruningPlan:
    """The replayable record of one pruning decision.

    Attributes:
        method: the pruner's registry name (``"magnitude"``, ``"channel"``, ...).
        granularity: ``"weight"`` (``masks``), ``"channel"`` (``channels``) or ``"neuron"``.
        target_sparsity: the requested fraction in [0, 1).
        config: the pruner's hyperparameters (JSON-safe).
        masks: parameter name (``"features.0.weight"``) -> bool tensor, ``True`` = kept.
        channels: module name -> output-channel indices removed from that (root) layer, in replay order;
            coupled layers (BatchNorm, the next layer's inputs, residual partners) follow from the dependency
            graph when replayed.
        remaining: module name -> output channels (features) left after channel removal, for every conv/linear
            layer: the widths a rebuilt structured model must have.
        stats: achieved numbers (e.g. ``{"sparsity": 0.5}``), informational.
    """

    method: str
    granularity: str
    target_sparsity: float
    config: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, Tensor] = field(default_factory=dict)
    channels: dict[str, list[int]] = field(default_factory=dict)
    remaining: dict[str, int] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ConfigError(f"granularity={self.granularity!r} is not accepted; accepted: {GRANULARITIES}")
        if not 0.0 <= float(self.target_sparsity) < 1.0:
            raise ConfigError(f"target_sparsity={self.target_sparsity} is outside [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; masks are stored as base64 packed bits."""
        return {
            "format": PLAN_FORMAT,
            "method": self.method,
            "granularity": self.granularity,
            "target_sparsity": float(self.target_sparsity),
            "config": dict(self.config),
            "masks": {name: _pack_mask(m) for name, m in self.masks.items()},
            "channels": {name: [int(i) for i in idx] for name, idx in self.channels.items()},
            "remaining": {name: int(n) for name, n in self.remaining.items()},
            "stats": {k: float(v) for k, v in self.stats.items()},
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PruningPlan:
        if not isinstance(raw, dict) or raw.get("format") != PLAN_FORMAT:
            raise IncompatibleModelError(f"not a pruning plan of format {PLAN_FORMAT!r}")
        try:
            return cls(
                method=str(raw["method"]),
                granularity=str(raw["granularity"]),
                target_sparsity=float(raw["target_sparsity"]),
                config=dict(raw.get("config", {})),
                masks={name: _unpack_mask(e) for name, e in raw.get("masks", {}).items()},
                channels={name: [int(i) for i in idx] for name, idx in raw.get("channels", {}).items()},
                remaining={name: int(n) for name, n in raw.get("remaining", {}).items()},
                stats={k: float(v) for k, v in raw.get("stats", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IncompatibleModelError(f"the pruning plan has wrong or missing fields: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> PruningPlan:
        return cls.from_dict(json.loads(text))


def prunable_modules(model: nn.Module, *, include_classifier: bool = True) -> dict[str, nn.Module]:
    """Conv/linear layers by module name, in registration order (optionally without the final classifier)."""
    mods: dict[str, nn.Module] = {n: m for n, m in model.named_modules() if isinstance(m, _PRUNABLE)}
    if not include_classifier and mods:
        mods.pop(next(reversed(mods)))
    return mods


def final_layer_name(model: nn.Module) -> str | None:
    """The module name of the final classifier (the last conv/linear layer), or ``None``."""
    mods = prunable_modules(model)
    return next(reversed(mods)) if mods else None


def is_masked(module: nn.Module, name: str = "weight") -> bool:
    return hasattr(module, f"{name}_orig") and hasattr(module, f"{name}_mask")


def _tensor(module: nn.Module, name: str) -> Tensor:
    return cast(Tensor, getattr(module, name))


def effective_weight(module: nn.Module) -> Tensor:
    """The weight a forward pass would use: ``weight_orig * weight_mask`` on a masked module (never stale)."""
    if is_masked(module):
        return _tensor(module, "weight_orig") * _tensor(module, "weight_mask")
    return _tensor(module, "weight")


@torch.no_grad()
def refresh_masked_weights_(model: nn.Module) -> None:
    """Recompute ``weight = weight_orig * weight_mask`` on every masked module (e.g. after ``load_state_dict``)."""
    for module in model.modules():
        if is_masked(module):
            module.weight = effective_weight(module)


@torch.no_grad()
def apply_plan_(model: nn.Module, plan: PruningPlan) -> None:
    """Install ``plan``'s weight masks on ``model`` in place (``torch.nn.utils.prune.custom_from_mask``).

    Masks stay active during training: the forward pre-hook multiplies ``weight_orig`` by ``weight_mask``, so
    pruned weights stay zero. A module that is already masked gets the AND of both masks.

    Raises:
        ConfigError: the plan has no masks (e.g. a channel plan; use ``remove_channels``).
        IncompatibleModelError: a mask names a missing parameter or has the wrong shape.
    """
    if not plan.masks:
        hint = " use remove_channels(model, plan, example_input) for channel plans" if plan.channels else ""
        raise ConfigError(f"plan granularity={plan.granularity!r} carries no weight masks;{hint}")
    modules = dict(model.named_modules())
    checked: list[tuple[nn.Module, str, Tensor]] = []
    for pname, mask in plan.masks.items():
        mod_name, _, attr = pname.rpartition(".")
        module = modules.get(mod_name)
        if module is None or attr != "weight" or not isinstance(module, _PRUNABLE):
            raise IncompatibleModelError(f"plan mask {pname!r} does not name a conv/linear weight of the model")
        shape = tuple(effective_weight(module).shape)
        if tuple(mask.shape) != shape:
            raise IncompatibleModelError(f"plan mask {pname!r} has shape {tuple(mask.shape)}, the weight {shape}")
        checked.append((module, pname, mask))
    for module, _, mask in checked:
        m = mask.to(device=effective_weight(module).device, dtype=effective_weight(module).dtype)
        if is_masked(module):
            _tensor(module, "weight_mask").mul_(m)
            module.weight = effective_weight(module)
        else:
            prune.custom_from_mask(module, "weight", m)


def make_permanent_(model: nn.Module) -> None:
    """Bake every ``torch.nn.utils.prune`` mask of ``model`` into its parameters; remove hooks and buffers."""
    for module in model.modules():
        names = [h._tensor_name for h in module._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
        for name in dict.fromkeys(names):
            prune.remove(module, name)


@torch.no_grad()
def layer_sparsity(model: nn.Module, *, include_classifier: bool = True) -> dict[str, float]:
    """Fraction of zero weights per conv/linear layer (masked or permanent)."""
    out = {}
    for name, m in prunable_modules(model, include_classifier=include_classifier).items():
        w = effective_weight(m)
        out[name] = float((w == 0).sum()) / max(1, w.numel())
    return out


@torch.no_grad()
def sparsity(model: nn.Module, *, include_classifier: bool = True) -> float:
    """Global fraction of zero weights over all conv/linear weights (biases and norm layers not counted)."""
    zeros, total = 0, 0
    for m in prunable_modules(model, include_classifier=include_classifier).values():
        w = effective_weight(m)
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / total if total else 0.0
