"""Neurons of a model as ANP sees them, and the functional re-parametrisation that masks/perturbs them.

A *neuron group* is a layer whose output channels carry one mask each: every BatchNorm, GroupNorm or LayerNorm
with an affine scale (mask on its scale, as in the paper: one per channel, or one per feature of a LayerNorm), and
every conv/linear layer whose output reaches no norm layer (mask on
its output channels; the author's stated equivalence). A conv output reaches a norm layer when only channel-wise
operations lie between them (ReLU, pooling, a residual addition): a pre-activation ResNet's ``conv -> add -> BN``
is covered by that BN's mask, as in the reference code, which masks BatchNorm layers only. The final classifier
is never masked.

Masking uses ``torch.func.functional_call`` with re-scaled parameters, so the model object itself is never
modified and no gradient is ever computed for its weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from pruneguard.errors import IncompatibleModelError

__all__ = ["NeuronGroup", "find_neuron_groups", "NeuronReparam", "prune_neurons_", "grads_or_zeros"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True, slots=True)
class NeuronGroup:
    """One maskable layer: its module path, kind (``norm``/``conv``/``linear``), number of neurons and whether it
    has a bias (a bias-less layer gets no bias noise)."""

    module: str
    kind: str
    size: int
    has_bias: bool

    @property
    def weight(self) -> str:
        return f"{self.module}.weight"

    @property
    def bias(self) -> str:
        return f"{self.module}.bias"


def find_neuron_groups(model: nn.Module, example: Tensor) -> list[NeuronGroup]:
    """Trace one forward pass of ``example`` to find the maskable layers of ``model`` in execution order."""
    names = {m: n for n, m in model.named_modules()}
    order: list[nn.Module] = []
    outputs: dict[int, tuple[nn.Module, Tensor]] = {}  # tensors kept alive so ids stay unique
    nodes: dict[object, nn.Module] = {}  # autograd node that produced a conv/linear output -> that layer
    normed: set[nn.Module] = set()

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        order.append(module)
        if isinstance(module, _NORMS) and inputs and isinstance(inputs[0], Tensor):
            normed.update(_layers_reaching(inputs[0], nodes))
        if isinstance(module, _LAYERS) and isinstance(output, Tensor):
            outputs[id(output)] = (module, output)
            if output.grad_fn is not None:
                nodes[output.grad_fn] = module

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _NORMS + _LAYERS)]
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():  # the autograd graph shows which layers feed each norm layer
            out = model(example.detach().clone().requires_grad_(True))
    except Exception as exc:  # a model that cannot run the example input does not fit the data
        raise IncompatibleModelError(
            f"the model cannot run an input of shape {tuple(example.shape)}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    final = outputs[id(out)][0] if isinstance(out, Tensor) and id(out) in outputs else None
    if final is None:
        final = next((m for m in reversed(order) if isinstance(m, _LAYERS)), None)
    groups: list[NeuronGroup] = []
    seen: set[nn.Module] = set()
    for m in order:
        if m in seen or m is final:
            continue
        seen.add(m)
        if isinstance(m, _NORMS) and _norm_scale(m) is not None:
            scale = _norm_scale(m)
            assert scale is not None  # for mypy: checked on the line above
            groups.append(NeuronGroup(names[m], "norm", scale.numel(), getattr(m, "bias", None) is not None))
        elif isinstance(m, _LAYERS) and m not in normed:
            size = m.out_features if isinstance(m, nn.Linear) else m.out_channels
            groups.append(
                NeuronGroup(names[m], "linear" if isinstance(m, nn.Linear) else "conv", size, m.bias is not None)
            )
    if not groups:
        raise IncompatibleModelError("the model has no maskable neurons (no BatchNorm and no hidden conv/linear)")
    return groups


def _norm_scale(m: nn.Module) -> Tensor | None:
    """The affine scale of a norm layer (BatchNorm/GroupNorm ``weight`` per channel, LayerNorm per feature)."""
    weight = getattr(m, "weight", None)
    return weight if isinstance(weight, Tensor) else None


# Autograd nodes a norm layer's mask passes through unchanged per channel (positively homogeneous or additive).
_CHANNELWISE = ("AddBackward", "ReluBackward", "MaxPool", "AvgPool", "AdaptiveAvgPool", "AdaptiveMaxPool",
                "CloneBackward", "ToCopyBackward")  # fmt: skip


def _layers_reaching(x: Tensor, nodes: dict[object, nn.Module]) -> set[nn.Module]:
    """The conv/linear layers whose outputs reach ``x`` through channel-wise operations only."""
    found: set[nn.Module] = set()
    stack, seen = [x.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node in nodes:
            found.add(nodes[node])
        elif type(node).__name__.startswith(_CHANNELWISE):
            stack.extend(n for n, _ in node.next_functions)
    return found


class NeuronReparam:
    """Computes the parameters of a model whose neurons are masked and perturbed.

    For a group with weight ``w`` and bias ``b``: ``w' = w * (mask + noise_w)`` per output neuron (per element of
    a LayerNorm's scale) and ``b' = b * (1 + noise_b)``; a layer without a bias gets no bias noise (its entries of
    ``noise_b`` are unused). ``mask``, ``noise_w``, ``noise_b`` are flat vectors over all groups.
    """

    def __init__(self, model: nn.Module, groups: list[NeuronGroup]) -> None:
        self.model = model
        self.groups = groups
        params = dict(model.named_parameters())
        self._weights = [params[g.weight].detach() for g in groups]
        self._biases = [params[g.bias].detach() if g.has_bias else None for g in groups]
        self.sizes = [g.size for g in groups]
        self.total = sum(self.sizes)

    def parameters_for(
        self, mask: Tensor, noise_w: Tensor | None = None, noise_b: Tensor | None = None
    ) -> dict[str, Tensor]:
        coeff_w = mask if noise_w is None else mask + noise_w
        parts_w = torch.split(coeff_w, self.sizes)
        parts_b = torch.split(noise_b, self.sizes) if noise_b is not None else [None] * len(self.groups)
        out: dict[str, Tensor] = {}
        for g, w, b, cw, nb in zip(self.groups, self._weights, self._biases, parts_w, parts_b, strict=True):
            shape = w.shape if g.kind == "norm" else (-1,) + (1,) * (w.dim() - 1)
            out[g.weight] = w * cw.view(shape)
            if b is not None and nb is not None:
                out[g.bias] = b * (1.0 + nb)
        return out

    def forward(self, x: Tensor, mask: Tensor, noise_w: Tensor | None = None, noise_b: Tensor | None = None) -> Tensor:
        if x.dim() == 4 and x.stride() != _row_major_strides(x.shape):
            # GroupNorm's CPU backward crashes (segfault, torch 2.13) on channels-last activations, which a
            # channels-last input (e.g. from the crop/flip augmentation) propagates through every conv
            x = x.clone(memory_format=torch.contiguous_format)
        return functional_call(self.model, self.parameters_for(mask, noise_w, noise_b), (x,))


def grads_or_zeros(loss: Tensor, inputs: list[Tensor]) -> list[Tensor]:
    """Gradients of ``loss``; zeros for an input it does not use (the bias noise of a model without biases)."""
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs, strict=True)]


def _row_major_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


@torch.no_grad()
def prune_neurons_(model: nn.Module, groups: list[NeuronGroup], flat_indices: Tensor) -> None:
    """Zero the scale (weight rows) of the neurons at ``flat_indices`` of the groups' concatenation; keep biases.

    Mutates ``model`` in place (ANP's pruning: a pruned BN neuron outputs its bias only).
    """
    params = dict(model.named_parameters())
    offsets = torch.cumsum(torch.tensor([0] + [g.size for g in groups]), 0)
    flat = torch.as_tensor(flat_indices, dtype=torch.long).flatten()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= int(offsets[-1])):
        raise IndexError(f"neuron index out of range [0, {int(offsets[-1])})")
    for i, g in enumerate(groups):
        local = flat[(flat >= offsets[i]) & (flat < offsets[i + 1])] - offsets[i]
        if local.numel():
            weight = params[g.weight]
            (weight.view(-1) if g.kind == "norm" else weight)[local] = 0.0
