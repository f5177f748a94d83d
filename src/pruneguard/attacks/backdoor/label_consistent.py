"""Label-consistent backdoor (Turner et al. 2019): hard target-class images, a 4-corner trigger, labels kept.

Also home of :func:`train_clean_surrogate`, the small clean model that the attacks needing one (label-consistent,
Trojan, input-aware) train from the data they are given when the caller passes none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from pruneguard.attacks.backdoor.params import check_param_types
from pruneguard.attacks.backdoor.poison import PoisonedData, poison_dataset
from pruneguard.attacks.backdoor.triggers import apply_patch, checkerboard, corner_location
from pruneguard.attacks.base import ATTACKS
from pruneguard.attacks.evasion.pgd import pgd
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.models.fit import TrainConfig, fit_
from pruneguard.models.registry import create_model

__all__ = [
    "LabelConsistent",
    "build_surrogate",
    "check_surrogate_params",
    "four_corner_trigger",
    "train_clean_surrogate",
]

logger = logging.getLogger(__name__)
_CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def check_surrogate_params(epochs: int, width: float) -> None:
    """Validate the surrogate-model fields shared by the attacks that train one."""
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ConfigError(f"surrogate_epochs={epochs!r} is not accepted; accepted: an integer >= 1")
    if not width > 0:
        raise ConfigError(f"surrogate_width={width!r} is not accepted; accepted: a positive number")


def build_surrogate(data: ArrayData, *, width: float = 0.5, seed: int = 0) -> nn.Module:
    """An untrained ``small_cnn`` (hidden 64) for ``data``'s images, normalised with ``data``'s statistics.

    Weights are initialised from ``seed`` inside a forked RNG: the global RNG is left as it was.
    """
    if data.x.dim() != 4 or min(data.x.shape[-2:]) < 4:
        raise ConfigError(f"data of shape {tuple(data.x.shape)} is not accepted; accepted: images (N, C, H>=4, W>=4)")
    if not width > 0:
        raise ConfigError(f"surrogate_width={width!r} is not accepted; accepted: a positive number")
    xf = data.float_x()
    mean = tuple(xf.mean(dim=(0, 2, 3)).tolist())
    std = tuple(xf.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(
            "small_cnn",
            num_classes=data.num_classes,
            input_shape=data.input_shape,
            mean=mean,
            std=std,
            width=width,
            hidden=64,
        )


def train_clean_surrogate(data: ArrayData, *, epochs: int = 5, width: float = 0.5, seed: int = 0) -> nn.Module:
    """Train a small clean CNN (:func:`build_surrogate`) with :func:`~pruneguard.models.fit.fit_`, in eval mode.

    Cost: ``epochs`` passes over ``data`` (under a second for ``digits``, tens of seconds per epoch for a
    Fashion-MNIST-size set on a CPU). Deterministic: initialisation and batch order are seeded by ``seed``.
    """
    check_surrogate_params(epochs, width)
    model = build_surrogate(data, width=width, seed=seed)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=min(128, max(2, len(data))),
        lr=0.05,
        crop_padding=max(1, data.x.shape[-1] // 14),
        hflip=False,
        seed=seed,
    )
    logger.info("training a clean surrogate on %s for %d epochs", data.name, epochs)
    fit_(model, data, cfg)
    return model.eval()


def four_corner_trigger(x: Tensor, *, patch_size: int = 3, margin: int = 1) -> Tensor:
    """Stamp the ``patch_size`` checkerboard in all four corners, mirrored so the trigger is flip-symmetric."""
    board = checkerboard(patch_size)
    out = x
    for corner in _CORNERS:
        patch = board.flip(-1) if corner.endswith("left") else board
        patch = patch.flip(-2) if corner.startswith("top") else patch
        loc = corner_location((x.shape[-2], x.shape[-1]), (patch_size, patch_size), corner, margin)
        out = apply_patch(out, patch, loc=loc)
    return out


@ATTACKS.register("label_consistent", kind="backdoor")
@dataclass(frozen=True, slots=True)
class LabelConsistent:
    """Label-consistent backdoor: PGD makes target-class images hard, then the 4-corner checkerboard is stamped.

    Paper: https://arxiv.org/abs/1912.02771 (adversarial-perturbation variant, L-inf ``eps=16/255`` on CIFAR-10).
    Threat model: clean label; the attacker perturbs ``rate`` of the target-class training images and keeps
    their labels. The perturbation is an untargeted L-inf PGD (``steps`` steps of ``2.5 * eps / steps``, random
    start) against a separately trained *clean* model, so the natural features of these images stop pointing to
    their (correct) label and the network learns the trigger instead. ``eps`` is on the [0, 1] image scale:
    16/255 is the paper's CIFAR-10 budget; small grey images (digits, MNIST) need a larger one (e.g. 32/255 to
    64/255) to make their images hard. The test-time trigger is the 4-corner checkerboard alone.

    ``poison(..., model=None)`` trains the clean model itself with :func:`train_clean_surrogate`
    (``surrogate_epochs`` epochs of a ``small_cnn`` of ``surrogate_width``, seeded by ``seed``): that is the
    main cost of this attack; pass ``model=`` to reuse one.

    Example:
        >>> attack = LabelConsistent(target_label=0)
        >>> poisoned = attack.poison(train, rate=0.5, generator=torch.Generator().manual_seed(0))
    """

    name: ClassVar[str] = "label_consistent"
    clean_label: ClassVar[bool] = True
    target_label: int = 0
    eps: float = 16 / 255
    steps: int = 10
    patch_size: int = 3
    surrogate_epochs: int = 5
    surrogate_width: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        check_param_types(self)
        if self.target_label < 0:
            raise ConfigError(f"target_label={self.target_label} is not accepted; accepted: an integer >= 0")
        if not 0.0 <= self.eps <= 1.0:
            hint = f" — images are in [0, 1]; did you mean {self.eps}/255?" if self.eps > 1 else ""
            raise ConfigError(f"eps={self.eps} is not accepted; accepted: [0, 1]{hint}")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ConfigError(f"steps={self.steps!r} is not accepted; accepted: an integer >= 1")
        if not (isinstance(self.patch_size, int) and self.patch_size >= 2):
            raise ConfigError(f"patch_size={self.patch_size!r} is not accepted; accepted: an integer >= 2")
        check_surrogate_params(self.surrogate_epochs, self.surrogate_width)

    def __call__(self, model: nn.Module | None, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> Tensor:
        return four_corner_trigger(x, patch_size=self.patch_size)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """The hard version of ``x``: untargeted L-inf PGD on ``model``, within ``eps`` and [0, 1]."""
        if self.eps == 0:
            return x.clone()
        device = next(model.parameters()).device
        x_adv = pgd(
            model,
            x.to(device),
            y.to(device),
            eps=self.eps,
            step_size=2.5 * self.eps / self.steps,
            steps=self.steps,
            generator=generator,
        )
        return x_adv.to(device=x.device, dtype=x.dtype)

    def poison(
        self,
        data: ArrayData,
        *,
        rate: float,
        generator: torch.Generator | None = None,
        model: nn.Module | None = None,
    ) -> PoisonedData:
        """Perturb and stamp ``rate`` of the target-class images of ``data``; labels unchanged.

        ``model`` is the clean model PGD runs against; ``None`` trains one on ``data`` (see the class doc).
        """
        if model is None:
            model = train_clean_surrogate(
                data, epochs=self.surrogate_epochs, width=self.surrogate_width, seed=self.seed
            )
        surrogate = model

        def stamp(x: Tensor, y: Tensor) -> Tensor:
            return self(None, self.perturb(surrogate, x, y, generator=generator), y)

        return poison_dataset(
            data,
            stamp,
            rate=rate,
            target_label=self.target_label,
            relabel=False,
            only_target_class=True,
            generator=generator,
        )
