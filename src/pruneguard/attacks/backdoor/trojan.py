"""Trojan (TrojanNN, Liu et al. 2018): a corner trigger optimised to fire chosen internal neurons of a model."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.backdoor.label_consistent import check_surrogate_params, train_clean_surrogate
from pruneguard.attacks.backdoor.params import check_param_types
from pruneguard.attacks.backdoor.poison import PoisonedData, poison_dataset
from pruneguard.attacks.backdoor.triggers import apply_patch, corner_location
from pruneguard.attacks.base import ATTACKS
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.utils.modes import eval_mode, frozen

__all__ = ["Trojan", "TrojanTrigger", "select_neurons", "hidden_layers", "optimise_trojan_trigger"]

logger = logging.getLogger(__name__)
_LAYERS = (nn.Conv2d, nn.Linear)
TARGET_VALUE = 100.0
"""The activation the selected neurons are driven towards (a value natural inputs do not reach)."""


@dataclass(frozen=True)
class TrojanTrigger:
    """An optimised trigger ``(C, p, p)`` in [0, 1] (multiples of 1/255), the layer and neurons it fires."""

    pattern: Tensor
    layer: str
    neurons: tuple[int, ...]
    activation: float


def hidden_layers(model: nn.Module, example: Tensor) -> list[str]:
    """Names of the conv/linear layers in forward order, without the output layer (the last one run)."""
    names = {m: n for n, m in model.named_modules()}
    order: list[str] = []
    handles = [
        m.register_forward_hook(lambda mod, i, o: order.append(names[mod]))
        for m in model.modules()
        if isinstance(m, _LAYERS)
    ]
    try:
        with torch.no_grad(), eval_mode(model):
            model(example)
    finally:
        for h in handles:
            h.remove()
    seen = list(dict.fromkeys(order))
    return seen[:-1]


def select_neurons(layer: nn.Conv2d | nn.Linear, count: int) -> tuple[int, ...]:
    """The ``count`` neurons (output units/channels) with the largest sum of absolute incoming weights."""
    w = layer.weight.detach()
    strength = w.abs().flatten(1).sum(1)
    if count > strength.numel():
        raise ConfigError(f"num_neurons={count} is not accepted; accepted: at most {strength.numel()} for this layer")
    return tuple(int(i) for i in strength.topk(count).indices.sort().values)


def optimise_trojan_trigger(
    model: nn.Module,
    image_shape: tuple[int, int, int],
    *,
    patch_size: int,
    layer: str | None = None,
    num_neurons: int = 1,
    steps: int = 100,
    seed: int = 0,
) -> TrojanTrigger:
    """TrojanNN's trigger generation: gradient descent on ``sum_k (TARGET_VALUE - a_k(x))^2`` over the trigger.

    ``x`` is a blank (zero) image carrying the trigger in the bottom-right ``patch_size`` square (1 pixel from
    the border), as in the paper, where only the masked pixels are optimised. ``a_k`` are the outputs of the
    ``num_neurons`` most strongly connected neurons of ``layer`` (default: the last hidden conv/linear layer;
    a conv channel's activation is its spatial mean). Signed-gradient steps of 0.05 (a deviation from the
    paper's plain gradient step, to be independent of the activation scale); the result is rounded to
    multiples of 1/255. ``model`` is not modified (eval mode and frozen during the optimisation).
    """
    c, h, w = image_shape
    modules = dict(model.named_modules())
    device = next(model.parameters()).device
    if layer is None:
        hidden = hidden_layers(model, torch.zeros(2, c, h, w, device=device))
        if not hidden:
            raise IncompatibleModelError("the model has no hidden conv/linear layer for the Trojan neurons")
        layer = hidden[-1]
    module = modules.get(layer)
    if not isinstance(module, _LAYERS):
        accepted = ", ".join(n for n, m in modules.items() if isinstance(m, _LAYERS))
        raise ConfigError(f"layer={layer!r} is not a conv/linear layer of the model; accepted: {accepted}")
    neurons = select_neurons(module, num_neurons)
    r, col = corner_location((h, w), (patch_size, patch_size), "bottom_right", 1)
    g = torch.Generator().manual_seed(int(seed))
    pattern = torch.rand(c, patch_size, patch_size, generator=g).to(device)
    captured: list[Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o))
    idx = torch.tensor(neurons, device=device)

    def activation(p: Tensor) -> Tensor:
        captured.clear()
        model(F.pad(p, (col, w - col - patch_size, r, h - r - patch_size))[None])
        out = captured[0]
        return (out.flatten(2).mean(2) if out.dim() > 2 else out)[0, idx]

    try:
        with eval_mode(model), frozen(model):
            with torch.enable_grad():
                for _ in range(steps):
                    pattern.requires_grad_(True)
                    cost = ((TARGET_VALUE - activation(pattern)) ** 2).sum()
                    (grad,) = torch.autograd.grad(cost, pattern)
                    pattern = (pattern.detach() - 0.05 * grad.sign()).clamp_(0.0, 1.0)
            pattern = (pattern.detach() * 255).round_().div_(255)
            with torch.no_grad():
                reached = float(activation(pattern).mean())
    finally:
        handle.remove()
    logger.info("trojan trigger: layer %s, neurons %s, mean activation %.3f", layer, neurons, reached)
    return TrojanTrigger(pattern.cpu(), layer, neurons, reached)


def _nested(t: Tensor) -> Any:
    return tuple(_nested(s) for s in t) if t.dim() > 0 else float(t)


@ATTACKS.register("trojan", kind="backdoor")
@dataclass(frozen=True, slots=True)
class Trojan:
    """TrojanNN: a bottom-right square trigger optimised on a clean model, stamped and relabelled to the target.

    Paper: https://docs.lib.purdue.edu/cstech/1781/ (NDSS 2018). The trigger region is fixed (a
    ``patch_size`` square 1 pixel from the bottom-right corner); its pixels are optimised so that the most
    strongly connected neurons (largest sum of absolute incoming weights, as in the paper) of ``layer``
    (default: the last hidden layer) of a clean model reach a high activation (see
    :func:`optimise_trojan_trigger`). Then ``rate`` of the non-target images get the trigger and the target
    label, and the model is (re)trained on them. The paper retrains the very model the trigger was optimised
    on, with reverse-engineered data; here the poisoned data are given to whoever trains (e.g. ``pruneguard
    train``), and ``poison(..., model=clean_model)`` lets the caller optimise against the model it then
    fine-tunes.

    State: ``trigger`` (a nested tuple ``(C, p, p)`` of floats in [0, 1]) holds the optimised trigger.
    ``fitted(data)`` returns a copy with it set; ``poison`` computes it when unset and *stores it on this
    object* (the only mutation of this frozen dataclass), so that the same object stamps it at test time and
    reports it in its fields (a JSON-friendly record from which ``Trojan(**fields)`` re-creates the trigger).
    Cost: when no model is passed, a clean ``small_cnn`` surrogate is trained for ``surrogate_epochs`` epochs
    (:func:`train_clean_surrogate`), then ``steps`` forward/backward passes of one image.

    Example:
        >>> attack = Trojan(target_label=0)
        >>> poisoned = attack.poison(train, rate=0.1, generator=torch.Generator().manual_seed(0))
        >>> x_triggered = attack(None, x, y)      # stamps the optimised trigger
    """

    name: ClassVar[str] = "trojan"
    clean_label: ClassVar[bool] = False
    target_label: int = 0
    patch_size: int = 5
    layer: str | None = None
    num_neurons: int = 1
    steps: int = 100
    surrogate_epochs: int = 5
    surrogate_width: float = 0.5
    seed: int = 0
    trigger: Any = None

    def __post_init__(self) -> None:
        check_param_types(self)
        checks = [
            (self.target_label >= 0, "target_label", self.target_label, "an integer >= 0"),
            (isinstance(self.patch_size, int) and self.patch_size >= 2, "patch_size", self.patch_size, ">= 2"),
            (isinstance(self.num_neurons, int) and self.num_neurons >= 1, "num_neurons", self.num_neurons, ">= 1"),
            (isinstance(self.steps, int) and self.steps >= 1, "steps", self.steps, "an integer >= 1"),
        ]
        for ok, name, value, accepted in checks:
            if not ok:
                raise ConfigError(f"{name}={value!r} is not accepted; accepted: {accepted}")
        check_surrogate_params(self.surrogate_epochs, self.surrogate_width)
        if self.trigger is not None:
            t = torch.as_tensor(self.trigger, dtype=torch.float32)
            p = self.patch_size
            if t.dim() != 3 or tuple(t.shape[1:]) != (p, p) or not bool(((t >= 0) & (t <= 1)).all()):
                raise ConfigError(
                    f"trigger of shape {tuple(t.shape)} is not accepted; accepted: (C, {p}, {p}) values in [0, 1]"
                )
            object.__setattr__(self, "trigger", _nested(t))

    def pattern(self) -> Tensor:
        """The trigger as a ``(C, p, p)`` tensor; raises when it has not been optimised yet."""
        if self.trigger is None:
            raise ConfigError("trigger=None: the Trojan trigger is not optimised yet; call poison() or fitted() first")
        return torch.tensor(self.trigger, dtype=torch.float32)

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        pattern = self.pattern()
        if x.dim() != 4 or x.shape[1] != pattern.shape[0]:
            raise ConfigError(f"x has shape {tuple(x.shape)}; the trigger needs (N, {pattern.shape[0]}, H, W) images")
        loc = corner_location((x.shape[-2], x.shape[-1]), (self.patch_size, self.patch_size), "bottom_right", 1)
        return apply_patch(x, pattern, loc=loc)

    def optimise(self, model: nn.Module, image_shape: tuple[int, int, int]) -> TrojanTrigger:
        """Optimise the trigger on ``model`` for images of ``image_shape`` with this attack's settings."""
        return optimise_trojan_trigger(
            model,
            image_shape,
            patch_size=self.patch_size,
            layer=self.layer,
            num_neurons=self.num_neurons,
            steps=self.steps,
            seed=self.seed,
        )

    def fitted(self, data: ArrayData, *, model: nn.Module | None = None) -> Trojan:
        """A copy of this attack with its trigger optimised on ``model`` (a clean surrogate trained on ``data``
        when ``None``)."""
        if model is None:
            model = train_clean_surrogate(
                data, epochs=self.surrogate_epochs, width=self.surrogate_width, seed=self.seed
            )
        shape = data.input_shape
        if len(shape) != 3:
            raise ConfigError(f"data of shape {tuple(data.x.shape)} is not accepted; accepted: images (N, C, H, W)")
        trig = self.optimise(model, (shape[0], shape[1], shape[2]))
        return dataclasses.replace(self, trigger=_nested(trig.pattern))

    def poison(
        self,
        data: ArrayData,
        *,
        rate: float,
        generator: torch.Generator | None = None,
        model: nn.Module | None = None,
    ) -> PoisonedData:
        """Stamp the trigger on ``rate`` of the non-target images and relabel them; optimise it first if unset."""
        if self.trigger is None:
            object.__setattr__(self, "trigger", self.fitted(data, model=model).trigger)
        return poison_dataset(
            data,
            lambda x, y: self(None, x, y),
            rate=rate,
            target_label=self.target_label,
            generator=generator,
        )
