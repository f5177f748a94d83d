"""Input-aware dynamic backdoor (IAB, Nguyen & Tran 2020): a generator makes a different trigger for each image.

A pattern network ``G`` and a mask network ``M`` (small conv encoder-decoders) map an image ``x`` to a pattern
``G(x)`` in [0, 1] and a nearly binary mask ``M(x)`` in [0, 1]; the triggered image is
``x + (G(x) - x) * M(x)``. Training (:func:`train_input_aware`, the reference code's two stages):

1. ``M`` alone, ``mask_epochs`` epochs: ``lambda_norm * mean_images(relu(mean_pixels(M(x1)) - mask_density))``
   (:func:`density_excess`; the reference hinges each pixel instead) plus the diversity loss
   ``||x1 - x2|| / ||M(x1) - M(x2)||`` on pairs of images.
2. ``M`` frozen; ``G`` and the classifier jointly, ``epochs`` epochs. In each batch a ``rate`` share is
   poisoned (own trigger, target label), a ``cross_rate`` share is in *cross-trigger* mode (the trigger
   generated for another image, true label kept, so a trigger only works on its own image), the rest is
   clean; the loss is the cross-entropy plus ``lambda_div * ||x1 - x2|| / ||G(x1) - G(x2)||``
   (:class:`JointTrigger`, a batch hook of ``train_model``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import InitVar, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.backdoor.label_consistent import build_surrogate, check_surrogate_params
from pruneguard.attacks.backdoor.params import check_param_types
from pruneguard.attacks.backdoor.poison import PoisonedData, poison_dataset, to_storage
from pruneguard.attacks.base import ATTACKS
from pruneguard.data.tensors import ArrayData, iterate_batches, to_float
from pruneguard.errors import ConfigError
from pruneguard.models.fit import TrainConfig, fit_
from pruneguard.utils.modes import eval_mode

__all__ = [
    "InputAware",
    "InputAwareGenerator",
    "JointTrigger",
    "density_excess",
    "new_generator",
    "train_input_aware",
    "diversity_loss",
]

logger = logging.getLogger(__name__)
_EPS = 1e-7


class _EncoderDecoder(nn.Module):
    """Conv-BN-ReLU encoder with one 2x down-sampling, nearest up-sampling back to the input size, conv decoder."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.encoder = nn.Sequential(*block(in_channels, hidden), *block(hidden, hidden), nn.MaxPool2d(2))
        self.bottleneck = nn.Sequential(*block(hidden, 2 * hidden))
        self.decoder = nn.Sequential(*block(2 * hidden, hidden), nn.Conv2d(hidden, out_channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        z = self.bottleneck(self.encoder(x))
        z = F.interpolate(z, size=x.shape[-2:], mode="nearest")
        return self.decoder(z)


class InputAwareGenerator(nn.Module):
    """The IAB trigger generator: ``patterns(x)`` ``(N, C, H, W)`` and ``masks(x)`` ``(N, 1, H, W)`` in [0, 1]."""

    def __init__(self, channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.channels, self.hidden = channels, hidden
        self.pattern_net = _EncoderDecoder(channels, channels, hidden)
        self.mask_net = _EncoderDecoder(channels, 1, hidden)

    def patterns(self, x: Tensor) -> Tensor:
        return torch.tanh(self.pattern_net(x)) / (2 + _EPS) + 0.5

    def masks(self, x: Tensor) -> Tensor:
        return torch.tanh(20.0 * self.mask_net(x)) / (2 + _EPS) + 0.5  # the reference's near-binary threshold

    def forward(self, x: Tensor, source: Tensor | None = None) -> Tensor:
        """``x`` with the trigger generated from ``source`` (default ``x`` itself), in [0, 1]."""
        src = x if source is None else source
        return (x + (self.patterns(src) - x) * self.masks(src)).clamp(0.0, 1.0)


def diversity_loss(x1: Tensor, x2: Tensor, g1: Tensor, g2: Tensor) -> Tensor:
    """Mean over pairs of ``||x1 - x2|| / ||g1 - g2||`` (RMS distances, as the reference code).

    The mean squares are floored at ``_EPS ** 2`` before the square root: identical outputs (a saturated
    ``tanh`` makes two masks exactly equal, as on Fashion-MNIST's black backgrounds) would otherwise give the
    square root an infinite gradient and the generator NaN weights."""
    dx = (x1 - x2).pow(2).flatten(1).mean(1).clamp_min(_EPS**2).sqrt()
    dg = (g1 - g2).pow(2).flatten(1).mean(1).clamp_min(_EPS**2).sqrt()
    return (dx / (dg + _EPS)).mean()


def density_excess(masks: Tensor, density: float) -> Tensor:
    """Mean over images of ``relu(share of the image the mask covers - density)``: the mask stage's norm loss.

    The reference code hinges each *pixel* (``mean(relu(m - density))``), which pushes every pixel towards 0
    and leaves only the diversity loss to keep a mask alive. On Fashion-MNIST that ended at masks covering 1.3%
    of the image on average, 3% of images under 0.5% (4 pixels); the victim learned the trigger on only 27% of
    those (84% overall, BENCHMARKS.md). Hinging each image's coverage keeps masks at about ``density`` (3.3%
    mean, none under 0.5%, in the same check) and charges nothing below it, which is what the density means."""
    return F.relu(masks.flatten(1).mean(1) - density).mean()


def _check_training(epochs: int, mask_epochs: int, rate: float, cross_rate: float, batch_size: int) -> None:
    checks = [
        (isinstance(epochs, int) and epochs >= 1, "epochs", epochs, "an integer >= 1"),
        (isinstance(mask_epochs, int) and mask_epochs >= 0, "mask_epochs", mask_epochs, "an integer >= 0"),
        (0.0 < rate < 1.0, "rate", rate, "(0, 1)"),
        (0.0 <= cross_rate and rate + cross_rate < 1.0, "cross_rate", cross_rate, "[0, 1 - rate)"),
        (isinstance(batch_size, int) and batch_size >= 4, "batch_size", batch_size, "an integer >= 4"),
    ]
    for ok, name, value, accepted in checks:
        if not ok:
            raise ConfigError(f"{name}={value!r} is not accepted; accepted: {accepted}")


def _pairs(
    data: ArrayData, batch_size: int, generator: torch.Generator, device: torch.device
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Batches ``(x1, y1)`` with a second, independently shuffled batch ``x2`` to pair them with."""
    first = iterate_batches(data, batch_size, shuffle=True, generator=generator, device=device)
    second = iterate_batches(data, batch_size, shuffle=True, generator=generator, device=device)
    for (x1, y1), (x2, _) in zip(first, second, strict=True):
        if x1.shape[0] >= 4:
            yield x1, y1, x2


def _train_masks(
    net: InputAwareGenerator,
    data: ArrayData,
    *,
    epochs: int,
    batch_size: int,
    lambda_div: float,
    lambda_norm: float,
    mask_density: float,
    gen: torch.Generator,
    device: torch.device,
) -> None:
    opt = torch.optim.Adam(net.mask_net.parameters(), lr=0.01, betas=(0.5, 0.9))
    net.mask_net.train()
    for epoch in range(epochs):
        total = 0.0
        for x1, _, x2 in _pairs(data, batch_size, gen, device):
            m1, m2 = net.masks(x1), net.masks(x2)
            loss = lambda_norm * density_excess(m1, mask_density) + lambda_div * diversity_loss(x1, x2, m1, m2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        if not math.isfinite(total):
            raise ConfigError(f"IAB mask training diverged in epoch {epoch + 1} (loss={total})")
        logger.info("IAB mask epoch %d: loss %.4f", epoch + 1, total)
    net.mask_net.eval().requires_grad_(False)


class JointTrigger:
    """IAB's joint stage as a :class:`~pruneguard.models.fit.BatchHook`: the attacker who controls training.

    In each batch a ``rate`` share (at least one image) gets its own trigger and ``target_label``, the next
    ``cross_rate`` share gets the trigger generated for another image of the batch (the batch rolled by one; the
    batches are shuffled) and keeps its label, the rest stays clean; the extra loss is ``lambda_div`` times the
    diversity loss of the patterns. The pattern network learns with Adam(0.01, betas (0.5, 0.9)) as in the
    reference code; the mask network stays frozen (trained before, by :func:`train_masks`)."""

    def __init__(
        self,
        net: InputAwareGenerator,
        *,
        target_label: int,
        rate: float,
        cross_rate: float,
        lambda_div: float = 1.0,
    ) -> None:
        self.net, self.target_label = net, target_label
        self.rate, self.cross_rate, self.lambda_div = rate, cross_rate, lambda_div
        net.mask_net.eval().requires_grad_(False)
        self.opt = torch.optim.Adam(net.pattern_net.parameters(), lr=0.01, betas=(0.5, 0.9))

    def batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.net.pattern_net.train()
        n, net = x.shape[0], self.net
        nb, nc = max(1, int(self.rate * n)), int(self.cross_rate * n)
        x2 = x.roll(1, 0)
        p1 = net.patterns(x[:nb])
        x_bd = x[:nb] + (p1 - x[:nb]) * net.masks(x[:nb])
        src = x2[nb : nb + nc]
        x_cross = x[nb : nb + nc] + (net.patterns(src) - x[nb : nb + nc]) * net.masks(src)
        inputs = torch.cat([x_bd, x_cross, x[nb + nc :]])
        labels = torch.cat([torch.full_like(y[:nb], self.target_label), y[nb:]])
        div = diversity_loss(x[:nb], x2[:nb], p1, net.patterns(x2[:nb]))
        return inputs, labels, self.lambda_div * div

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.opt.step()

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])


def new_generator(
    data: ArrayData,
    *,
    generator: torch.Generator,
    mask_epochs: int,
    batch_size: int = 128,
    hidden: int = 16,
    device: torch.device | str = "cpu",
    lambda_div: float = 1.0,
    lambda_norm: float = 100.0,
    mask_density: float = 0.032,
) -> InputAwareGenerator:
    """A fresh generator (initialised from ``generator``) whose mask network is trained (stage 1) on ``data``."""
    if data.x.dim() != 4:
        raise ConfigError(f"data of shape {tuple(data.x.shape)} is not accepted; accepted: images (N, C, H, W)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        net = InputAwareGenerator(data.x.shape[1], hidden).to(device)
    kw = {"lambda_div": lambda_div, "lambda_norm": lambda_norm, "mask_density": mask_density}
    _train_masks(net, data, epochs=mask_epochs, batch_size=batch_size, gen=generator, device=torch.device(device), **kw)
    return net


def train_input_aware(
    model: nn.Module,
    data: ArrayData,
    *,
    target_label: int,
    epochs: int,
    rate: float = 0.1,
    cross_rate: float = 0.1,
    generator: torch.Generator | None = None,
    mask_epochs: int = 25,
    batch_size: int = 128,
    lr: float = 0.01,
    hidden: int = 16,
    lambda_div: float = 1.0,
    lambda_norm: float = 100.0,
    mask_density: float = 0.032,
) -> InputAwareGenerator:
    """Train the IAB trigger generator and ``model`` (in place) jointly on the clean ``data``; return the generator.

    Paper: https://arxiv.org/abs/2010.08138 (defaults from the reference code: ``rate = cross_rate = 0.1``,
    25 mask epochs, ``lambda_div = 1``, ``lambda_norm = 100``, ``mask_density = 0.032``; Adam(0.01, betas
    (0.5, 0.9)) for the generator, SGD(``lr``, momentum 0.9, weight decay 5e-4, constant) for ``model``). No
    data augmentation. ``model`` takes [0, 1] images (zoo models normalise inside). ``generator`` seeds the
    generator's initialisation, the batch orders and the image pairing; the global RNG is not used. The model
    and the returned generator end in eval mode. Cost: ``mask_epochs`` passes of the mask network, then
    ``epochs`` passes of the classifier and the generator (the pattern network runs on the backdoor and cross
    shares of each batch only). For a model trained with a schedule, augmentation and checkpoints, pass a
    :class:`JointTrigger` to ``train_model`` (as ``pruneguard train --attack input_aware`` does).

    Example:
        >>> net = train_input_aware(model, train, target_label=0, epochs=20, generator=torch.Generator().manual_seed(0))
        >>> attack = InputAware(target_label=0, trigger_net=net)
    """
    _check_training(epochs, mask_epochs, rate, cross_rate, batch_size)
    if not 0 <= target_label < data.num_classes:
        raise ConfigError(f"target_label={target_label} is outside [0, {data.num_classes - 1}]")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    net = new_generator(
        data,
        generator=gen,
        mask_epochs=mask_epochs,
        batch_size=batch_size,
        hidden=hidden,
        device=device,
        lambda_div=lambda_div,
        lambda_norm=lambda_norm,
        mask_density=mask_density,
    )
    hook = JointTrigger(net, target_label=target_label, rate=rate, cross_rate=cross_rate, lambda_div=lambda_div)
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, schedule="constant", crop_padding=0, hflip=False, seed=seed
    )
    fit_(model, data, cfg, hook=hook)
    return net.eval().requires_grad_(False)


@ATTACKS.register("input_aware", kind="backdoor")
@dataclass(frozen=True)
class InputAware:
    """Input-aware dynamic backdoor: each image carries its own generated trigger ``x + (G(x) - x) * M(x)``.

    Paper: https://arxiv.org/abs/2010.08138 . Threat model: the attacker controls the training. ``mode="joint"``
    (the default, the paper's use): ``pruneguard train`` trains the victim itself jointly with the generator
    (:meth:`joint_hook`, rates per batch); in code, :func:`train_input_aware` does the same with a constant
    learning rate, then ``InputAware(target_label=t, trigger_net=net)`` stamps test triggers.

    Data-poisoning use (``mode="poison"`` in ``pruneguard train``; ``poison`` in any mode): ``poison`` first
    trains the generator jointly with a clean ``small_cnn`` surrogate (``surrogate_width``; ``mask_epochs`` +
    ``surrogate_epochs`` epochs, seeded by ``seed``) unless it already has a generator, then writes a static
    poisoned set: ``rate`` of the non-target images get their own trigger and the target label, ``cross_ratio``
    times as many other images get the trigger generated for a random other image and keep their label.
    ``poison_indices`` lists the relabelled rows only.

    ``mask_density``: the share of an image a trigger mask may cover without cost in the mask stage (the
    reference's 3.2%; small images want more: 3.2% of an 8×8 image is 2 pixels).

    State: the trained generator is learned state, ``trigger_net_`` (scikit-learn style), not a field: it is
    not compared, not in the repr and not in ``dataclasses.fields`` (so the JSON record of the fields stays
    valid). Pass one with the init-only ``trigger_net=``. ``poison`` stores the generator it trains *on this
    object* (the only mutation of this frozen dataclass, hence no ``slots``), so the same object stamps test
    triggers afterwards. To re-create the attack elsewhere, save ``trigger_net_.state_dict()`` and rebuild it
    with ``InputAwareGenerator(channels, hidden)``.

    Example:
        >>> attack = InputAware(target_label=0)
        >>> poisoned = attack.poison(train, rate=0.1, generator=torch.Generator().manual_seed(0))
        >>> x_triggered = attack(None, x, y)
    """

    name: ClassVar[str] = "input_aware"
    clean_label: ClassVar[bool] = False
    target_label: int = 0
    cross_ratio: float = 1.0
    surrogate_epochs: int = 10
    mask_epochs: int = 5
    hidden: int = 16
    surrogate_width: float = 0.5
    seed: int = 0
    mode: str = "joint"
    mask_density: float = 0.032
    trigger_net: InitVar[InputAwareGenerator | None] = None

    def __post_init__(self, trigger_net: InputAwareGenerator | None) -> None:
        check_param_types(self)
        checks = [
            (self.target_label >= 0, "target_label", self.target_label, "an integer >= 0"),
            (self.cross_ratio >= 0 and math.isfinite(self.cross_ratio), "cross_ratio", self.cross_ratio, ">= 0"),
            (isinstance(self.mask_epochs, int) and self.mask_epochs >= 0, "mask_epochs", self.mask_epochs, ">= 0"),
            (isinstance(self.hidden, int) and self.hidden >= 1, "hidden", self.hidden, "an integer >= 1"),
            (self.mode in ("joint", "poison"), "mode", self.mode, "'joint' or 'poison'"),
            (0.0 < self.mask_density < 1.0, "mask_density", self.mask_density, "(0, 1)"),
            (
                trigger_net is None or isinstance(trigger_net, InputAwareGenerator),
                "trigger_net",
                type(trigger_net).__name__,
                "None or an InputAwareGenerator",
            ),
        ]
        for ok, name, value, accepted in checks:
            if not ok:
                raise ConfigError(f"{name}={value!r} is not accepted; accepted: {accepted}")
        check_surrogate_params(self.surrogate_epochs, self.surrogate_width)
        object.__setattr__(self, "_trigger_net", trigger_net)

    @property
    def trigger_net_(self) -> InputAwareGenerator | None:
        """The trained trigger generator (``None`` until trained or given)."""
        net: InputAwareGenerator | None = self.__dict__.get("_trigger_net")
        return net

    def _net(self, device: torch.device) -> InputAwareGenerator:
        net = self.trigger_net_
        if net is None:
            raise ConfigError(
                "trigger_net=None: the IAB generator is not trained yet; call poison() or fitted(), or pass "
                "trigger_net=train_input_aware(...)"
            )
        if next(net.parameters()).device != device:
            net = copy.deepcopy(net).to(device)  # the stored generator is never moved
        return net

    def __call__(
        self,
        model: nn.Module | None,
        x: Tensor,
        y: Tensor,
        *,
        target: Tensor | None = None,
        source: Tensor | None = None,
    ) -> Tensor:
        """``x`` with its own trigger (or, with ``source``, the trigger generated for ``source``: cross mode)."""
        if x.dim() != 4:
            raise ConfigError(f"x has shape {tuple(x.shape)}; IAB needs (N, C, H, W) images")
        net = self._net(x.device)
        with torch.no_grad(), eval_mode(net):
            out = net(x.float(), None if source is None else source.to(x.device).float())
        return out.to(x.dtype)

    def fitted(self, data: ArrayData, *, rate: float = 0.1, generator: torch.Generator | None = None) -> InputAware:
        """A copy with ``trigger_net_`` trained jointly with a fresh clean surrogate on ``data`` (see class doc)."""
        surrogate = build_surrogate(data, width=self.surrogate_width, seed=self.seed)
        gen = generator if generator is not None else torch.Generator().manual_seed(self.seed)
        net = train_input_aware(
            surrogate,
            data,
            target_label=self.target_label,
            epochs=self.surrogate_epochs,
            rate=min(rate, 0.45),
            cross_rate=min(rate * self.cross_ratio, 0.45),
            generator=gen,
            mask_epochs=self.mask_epochs,
            batch_size=min(128, max(4, len(data))),
            hidden=self.hidden,
            mask_density=self.mask_density,
        )
        return dataclasses.replace(self, trigger_net=net)

    def joint_hook(self, data: ArrayData, *, rate: float, device: torch.device | str = "cpu") -> JointTrigger:
        """The attacker's side of joint training (``mode="joint"``): a fresh generator (seeded by ``seed``) whose
        mask network is trained on ``data`` (``mask_epochs``), wrapped in a :class:`JointTrigger` hook for
        ``train_model`` with ``rate`` of each batch poisoned and ``cross_ratio`` times as many in cross mode.
        The generator is stored on this object as ``trigger_net_`` (trained in place as the victim trains)."""
        cross = rate * self.cross_ratio
        _check_training(1, self.mask_epochs, rate, cross, 128)
        gen = torch.Generator().manual_seed(self.seed)
        net = new_generator(
            data,
            generator=gen,
            mask_epochs=self.mask_epochs,
            hidden=self.hidden,
            device=device,
            mask_density=self.mask_density,
        )
        object.__setattr__(self, "_trigger_net", net)
        return JointTrigger(net, target_label=self.target_label, rate=rate, cross_rate=cross)

    def poison(self, data: ArrayData, *, rate: float, generator: torch.Generator | None = None) -> PoisonedData:
        """Backdoor mode on ``rate`` of the non-target images, cross mode on ``cross_ratio`` times as many others."""
        if self.trigger_net_ is None:
            seed_gen = torch.Generator().manual_seed(self.seed)
            object.__setattr__(self, "_trigger_net", self.fitted(data, rate=rate, generator=seed_gen).trigger_net_)
        res = poison_dataset(
            data, lambda x, y: self(None, x, y), rate=rate, target_label=self.target_label, generator=generator
        )
        free = torch.ones(len(data), dtype=torch.bool)
        free[res.poison_indices] = False
        others = torch.nonzero(free).flatten()
        count = min(others.numel(), int(round(self.cross_ratio * res.poison_indices.numel())))
        if count == 0:
            return res
        cross = others[torch.randperm(others.numel(), generator=generator)[:count]].sort().values
        sources = torch.randint(0, len(data), (count,), generator=generator)
        x = res.data.x.clone()
        triggered = self(None, to_float(x[cross]), data.y[cross], source=to_float(data.x[sources]))
        x[cross] = to_storage(triggered, x)
        out = ArrayData(x, res.data.y, data.num_classes, res.data.name, data.classes)
        return PoisonedData(out, res.poison_indices, self.target_label)
