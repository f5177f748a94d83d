"""Structured channel pruning with Torch-Pruning's dependency graph (Fang et al., CVPR 2023,
https://arxiv.org/abs/2301.12900), group L-p norm importance (Li et al. 2017, https://arxiv.org/abs/1608.08710).

:class:`ChannelPruner` removes the fraction ``sparsity`` of the output channels of every conv/linear layer
except the final classifier. Coupled layers form one group (a conv, its BatchNorm, the next layer's input
channels, residual partners) whose importance is the group's summed channel norm, so residual networks stay
consistent. ``plan`` runs the pruner on a deep copy and records Torch-Pruning's pruning history (module name
-> removed output-channel indices, in order); :func:`remove_channels` replays it on a deep copy of a model and
returns the new, physically smaller model.

Saving a structured model: the zoo's ``create_model`` rebuilds the *dense* widths, so a structured model is
stored as its state dict plus the plan (``plan.to_dict()``). To load it, build the dense architecture, call
``remove_channels(dense, plan, example_input)`` and load the state dict into the result. ``plan.remaining``
lists every conv/linear layer's width after removal.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch_pruning as tp
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.pruning.base import (
    PRUNERS,
    PruningPlan,
    effective_weight,
    final_layer_name,
    is_masked,
    make_permanent_,
    prunable_modules,
)
from pruneguard.utils.modes import eval_mode

__all__ = ["ChannelPruner", "channel_norm_scores", "remove_channels", "example_batch", "channel_widths"]


def channel_norm_scores(layer: nn.Module, p: float = 2) -> Tensor:
    """L-``p`` norm of each output channel (conv) or feature (linear) of ``layer.weight``: ``(C_out,)``."""
    w = effective_weight(layer).detach()
    return w.flatten(1).norm(p=p, dim=1)


def channel_widths(model: nn.Module) -> dict[str, int]:
    """Output channels (conv) or features (linear) of every conv/linear layer, by module name."""
    return {
        n: int(m.out_features if isinstance(m, nn.Linear) else m.out_channels)  # type: ignore[arg-type]
        for n, m in prunable_modules(model).items()
    }


def example_batch(data: Any, input_shape: tuple[int, ...] | None = None) -> Tensor:
    """Two float inputs for tracing: from a tensor, :class:`ArrayData`, a loader of ``(x, y)`` or a shape."""
    if isinstance(data, Tensor):
        return to_float(data[:2])
    if isinstance(data, ArrayData):
        return to_float(data.x[:2])
    if data is not None and isinstance(data, Iterable):
        first = next(iter(data))
        x = first[0] if isinstance(first, (tuple, list)) else first
        return to_float(torch.as_tensor(x)[:2])
    if input_shape is not None:
        return torch.rand(2, *input_shape, generator=torch.Generator().manual_seed(0))
    raise ConfigError("channel pruning traces the model: pass data (a batch, ArrayData or loader) or input_shape")


def _prepared_copy(model: nn.Module) -> nn.Module:
    work = copy.deepcopy(model)
    if any(is_masked(m) for m in work.modules()):
        make_permanent_(work)
    for p in work.parameters():
        p.requires_grad_(True)  # Torch-Pruning traces autograd; flags are restored by name afterwards
    return work


def _restore_flags_(work: nn.Module, model: nn.Module) -> None:
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in work.named_parameters():
        p.requires_grad_(flags.get(n.replace("_orig", ""), True))


def _build_graph(model: nn.Module, example: Tensor) -> tp.DependencyGraph:
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:  # tracing a foreign model can fail in many ways; report it as incompatibility
        raise IncompatibleModelError(
            f"Torch-Pruning could not trace the model on an input of shape {tuple(example.shape)}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


@dataclass(frozen=True, slots=True)
class ChannelPruner:
    """Removes ``sparsity`` of the output channels of every conv/linear layer except the final classifier.

    Args:
        sparsity: fraction of channels to remove per layer (group), in [0, 1).
        p: norm order of the group importance (2 = L2).
        round_to: keep channel counts multiples of this (e.g. 8 for fast kernels), or ``None``.
        input_shape: ``(C, H, W)`` used to trace when ``plan`` gets no data.

    Example:
        >>> plan = ChannelPruner(sparsity=0.5).plan(model, x[:2])
        >>> small = remove_channels(model, plan, x[:2])   # a new model; ``model`` is untouched
    """

    name: ClassVar[str] = "channel"
    sparsity: float = 0.3
    p: float = 2
    round_to: int | None = None
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not (0.0 <= self.sparsity < 1.0) or not math.isfinite(self.sparsity):
            raise ConfigError(f"sparsity={self.sparsity} is outside [0, 1)")
        if not self.p > 0:
            raise ConfigError(f"p={self.p} must be > 0 (the norm order)")
        if self.round_to is not None and (not isinstance(self.round_to, int) or self.round_to < 1):
            raise ConfigError(f"round_to={self.round_to!r} must be None or an integer >= 1")

    def config(self) -> dict[str, Any]:
        return {
            "sparsity": self.sparsity,
            "p": self.p,
            "round_to": self.round_to,
            "input_shape": list(self.input_shape) if self.input_shape else None,
        }

    def plan(self, model: nn.Module, data: Any = None) -> PruningPlan:
        """Trace and prune a deep copy of ``model``; record which channels went. ``model`` is not modified."""
        return self._plan_and_prune(model, example_batch(data, self.input_shape))[0]

    def _plan_and_prune(self, model: nn.Module, example: Tensor) -> tuple[PruningPlan, nn.Module]:
        work = _prepared_copy(model)
        example = to_float(example[:2]).to(next(work.parameters()).device)
        final_name = final_layer_name(work)
        final = prunable_modules(work).get(final_name or "")
        before = channel_widths(work)
        with eval_mode(work):
            try:
                pruner = tp.pruner.BasePruner(
                    work,
                    example,
                    importance=tp.importance.GroupMagnitudeImportance(p=self.p),
                    pruning_ratio=self.sparsity,
                    ignored_layers=[final] if final is not None else [],
                    round_to=self.round_to,
                )
            except Exception as exc:  # see _build_graph
                raise IncompatibleModelError(f"Torch-Pruning could not trace the model: {exc}") from None
            pruner.step()
        _restore_flags_(work, model)
        channels: dict[str, list[int]] = {}
        for name, is_out, idxs in pruner.DG.pruning_history():
            if not is_out or name in channels:
                raise IncompatibleModelError(f"unexpected Torch-Pruning history entry for {name!r}")
            channels[name] = [int(i) for i in idxs]
        after = channel_widths(work)
        inner = [n for n in before if n != final_name]
        removed = sum(before[n] - after[n] for n in inner)
        stats = {
            "channel_sparsity": removed / max(1, sum(before[n] for n in inner)),
            "params_before": float(sum(p.numel() for p in model.parameters())),
            "params_after": float(sum(p.numel() for p in work.parameters())),
        }
        plan = PruningPlan(
            self.name,
            "channel",
            self.sparsity,
            self.config(),
            channels=channels,
            remaining=after,
            stats=stats,
        )
        return plan, work


def remove_channels(model: nn.Module, plan_or_ratio: PruningPlan | float, example_input: Tensor) -> nn.Module:
    """A NEW model with the plan's channels physically removed (``model`` is deep-copied, never touched).

    ``plan_or_ratio`` is a channel :class:`PruningPlan` or a fraction (then ``ChannelPruner(sparsity=ratio)``
    plans on ``example_input``). ``example_input`` is a float batch the model accepts, e.g. ``x[:2]``.
    Weight masks of a masked model are made permanent in the copy first. BatchNorm running statistics of the
    kept channels are preserved; the new model is in the training mode ``model`` was in.
    """
    if isinstance(plan_or_ratio, PruningPlan):
        plan = plan_or_ratio
    elif isinstance(plan_or_ratio, (int, float)) and not isinstance(plan_or_ratio, bool):
        return ChannelPruner(sparsity=float(plan_or_ratio))._plan_and_prune(model, example_input)[1]
    else:
        raise TypeError(f"plan_or_ratio must be a PruningPlan or a float, got {type(plan_or_ratio).__name__}")
    if plan.granularity != "channel":
        raise ConfigError(f"remove_channels needs a channel plan, got granularity={plan.granularity!r}")
    work = _prepared_copy(model)
    names = dict(work.named_modules())
    missing = [n for n in plan.channels if n not in names]
    if missing:
        raise IncompatibleModelError(f"the plan names layers the model lacks: {', '.join(missing[:5])}")
    example = to_float(example_input[:2]).to(next(work.parameters()).device)
    with eval_mode(work):
        graph = _build_graph(work, example)
        for name, idxs in plan.channels.items():
            module = names[name]
            fn = graph.get_pruner_of_module(module).prune_out_channels
            if max(idxs, default=-1) >= graph.get_out_channels(module):
                raise IncompatibleModelError(
                    f"the plan removes channel {max(idxs)} of {name!r}, which has {graph.get_out_channels(module)}"
                )
            group = graph.get_pruning_group(module, fn, idxs)
            if graph.check_pruning_group(group):
                group.prune()
    _restore_flags_(work, model)
    widths = channel_widths(work)
    wrong = {n: (widths.get(n), c) for n, c in plan.remaining.items() if widths.get(n) != c}
    if wrong:
        raise IncompatibleModelError(f"after replaying the plan, layer widths differ from the plan: {wrong}")
    return work


PRUNERS.register("channel")(ChannelPruner)
