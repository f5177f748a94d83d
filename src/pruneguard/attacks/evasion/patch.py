"""Universal adversarial patch (Brown et al. 2017): one targeted patch, trained over images and locations."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneguard.attacks.base import ATTACKS
from pruneguard.attacks.evasion._common import check_inputs, check_positive, check_positive_int, randint
from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.errors import ConfigError
from pruneguard.utils.modes import eval_mode, frozen

__all__ = ["PatchAttack", "train_universal_patch", "paste_patch", "random_locations"]


def random_locations(
    n: int,
    image_hw: tuple[int, int],
    patch_hw: tuple[int, int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-left ``(rows, cols)``, each ``(n,)``, uniform over the positions where the patch fits."""
    (h, w), (ph, pw) = image_hw, patch_hw
    if ph > h or pw > w:
        raise ConfigError(f"patch of size {ph}x{pw} does not fit images of size {h}x{w}")
    device = device or torch.device("cpu")
    return randint(h - ph + 1, n, generator, device), randint(w - pw + 1, n, generator, device)


def paste_patch(x: Tensor, patch: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Paste ``patch`` (``(C, h, w)``, C = 1 or x's C) into each image ``x[i]`` at ``(rows[i], cols[i])``.

    Differentiable w.r.t. ``patch`` (the EOT step of patch training); ``x`` is not modified.
    """
    n, c = x.shape[:2]
    ph, pw = patch.shape[-2:]
    dr = torch.arange(ph, device=x.device).view(1, ph, 1)
    dc = torch.arange(pw, device=x.device).view(1, 1, pw)
    index = (torch.arange(n, device=x.device).view(n, 1, 1), rows.view(n, 1, 1) + dr, cols.view(n, 1, 1) + dc)
    values = patch.to(device=x.device, dtype=x.dtype).expand(c, ph, pw).permute(1, 2, 0).expand(n, ph, pw, c)
    return x.permute(0, 2, 3, 1).index_put(index, values).permute(0, 3, 1, 2).contiguous()


def _batches(data: Any, batch_size: int, generator: torch.Generator | None) -> Iterator[Tensor]:
    """Endless image batches: random minibatches of a tensor/ArrayData, or cycles over an iterable of batches."""
    if isinstance(data, ArrayData):
        data = data.x
    if isinstance(data, Tensor):
        while True:
            idx = randint(len(data), min(batch_size, len(data)), generator, torch.device("cpu"))
            yield to_float(data[idx.to(data.device)])
    if not isinstance(data, Iterable):
        raise TypeError(
            f"data={type(data).__name__}; accepted: a tensor of images, ArrayData, or an iterable "
            "of batches (x or (x, y))"
        )
    while True:
        empty = True
        for batch in data:
            empty = False
            yield to_float(batch[0] if isinstance(batch, tuple | list) else batch)
        if empty:
            raise ConfigError("data yielded no batches; accepted: a non-empty iterable of image batches")


def train_universal_patch(
    model: nn.Module,
    data: Any,
    *,
    patch_size: int | tuple[int, int],
    target: int,
    steps: int = 500,
    lr: float = 0.05,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Optimise one patch that makes ``model`` predict ``target`` wherever it is pasted on any image.

    Paper: https://arxiv.org/abs/1712.09665 . Threat model: white box at training time; the patch is then a
    physical/universal perturbation (unbounded inside the patch, nothing outside). Each step pastes the patch at a
    random location in every image of a batch (expectation over transformation) and takes an Adam step on the
    cross-entropy to ``target``; the patch stays in [0, 1]. ``model``'s flags are restored.

    Args:
        data: images ``(N, C, H, W)`` in [0, 1] (or uint8), an ``ArrayData``, or an iterable of batches.
        patch_size: side (or ``(h, w)``) of the patch in pixels.

    Returns:
        The patch ``(C, h, w)`` in [0, 1], on the device of the data.

    Example:
        >>> patch = train_universal_patch(model, x, patch_size=4, target=0, steps=200,
        ...                               generator=torch.Generator().manual_seed(0))
        >>> x_adv = PatchAttack(patch)(model, x, y)
    """
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    check_positive_int(ph, "patch_size")
    check_positive_int(pw, "patch_size")
    check_positive_int(target, "target", minimum=0)
    check_positive_int(steps, "steps")
    check_positive_int(batch_size, "batch_size")
    check_positive(lr, "lr")
    batches = _batches(data, batch_size, generator)
    x = next(batches)
    if x.dim() != 4:
        raise ConfigError(f"images have shape {tuple(x.shape)}; accepted: (N, C, H, W)")
    init = torch.rand(
        (x.shape[1], ph, pw), generator=generator, device=generator.device if generator is not None else x.device
    )
    patch = init.to(device=x.device, dtype=x.dtype).requires_grad_(True)
    optimizer = torch.optim.Adam([patch], lr=lr)
    with eval_mode(model), frozen(model), torch.enable_grad():
        for step in range(steps):
            x = x if step == 0 else next(batches)
            rows, cols = random_locations(
                len(x), (x.shape[-2], x.shape[-1]), (ph, pw), generator=generator, device=x.device
            )
            logits = model(paste_patch(x, patch, rows, cols))
            if step == 0 and target >= logits.shape[-1]:
                raise ConfigError(f"target={target} is outside [0, {logits.shape[-1] - 1}] (the model's classes)")
            loss = F.cross_entropy(logits, torch.full((len(x),), target, device=x.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                patch.clamp_(0.0, 1.0)
    return patch.detach()


@ATTACKS.register("patch", kind="evasion")
@dataclass(frozen=True, slots=True, eq=False)
class PatchAttack:
    """Paste a (trained) universal patch at ``location`` (top-left ``(row, col)``) or, if ``None`` or ``"random"``,
    at a random location per image drawn from ``generator``. The model is not used.

    Example:
        >>> x_adv = PatchAttack(patch, location=(2, 2))(model, x, y)
    """

    name: ClassVar[str] = "patch"
    patch: Tensor
    location: tuple[int, int] | Literal["random"] | None = None

    def __post_init__(self) -> None:
        p = self.patch
        if not isinstance(p, Tensor) or not p.is_floating_point() or p.dim() not in (2, 3):
            raise ConfigError(
                f"patch has shape {tuple(getattr(p, 'shape', ()))}; accepted: a float tensor "
                "(h, w) or (C, h, w) in [0, 1]"
            )
        if p.numel() == 0 or float(p.min()) < 0.0 or float(p.max()) > 1.0:
            raise ConfigError("patch values are outside [0, 1]; accepted: a patch in [0, 1]")
        if p.dim() == 2:
            object.__setattr__(self, "patch", p.unsqueeze(0))
        if self.location == "random":
            object.__setattr__(self, "location", None)
        elif self.location is not None:
            loc = tuple(self.location) if isinstance(self.location, tuple | list) else ()
            if len(loc) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in loc):
                raise ConfigError(f"location={self.location!r}; accepted: None or 'random', or (row, col) >= 0")
            object.__setattr__(self, "location", loc)

    def __call__(
        self,
        model: nn.Module | None,
        x: Tensor,
        y: Tensor,
        *,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        check_inputs(x, y, target)
        if x.dim() != 4:
            raise ConfigError(f"x has shape {tuple(x.shape)}; PatchAttack accepts only images (N, C, H, W)")
        c, ph, pw = self.patch.shape
        if c not in (1, x.shape[1]):
            raise ConfigError(f"patch has {c} channels; accepted: 1 or the images' {x.shape[1]}")
        if self.location is None or isinstance(self.location, str):
            rows, cols = random_locations(
                len(x), (x.shape[-2], x.shape[-1]), (ph, pw), generator=generator, device=x.device
            )
        else:
            r, col = self.location
            if r + ph > x.shape[-2] or col + pw > x.shape[-1]:
                raise ConfigError(
                    f"patch of size {ph}x{pw} at location={self.location} does not fit images of "
                    f"size {tuple(x.shape[-2:])}"
                )
            rows = torch.full((len(x),), r, device=x.device)
            cols = torch.full((len(x),), col, device=x.device)
        return paste_patch(x.detach(), self.patch, rows, cols)
