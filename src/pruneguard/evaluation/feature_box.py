"""A tabular model seen from its standardised feature space, rescaled to [0, 1]: where tabular attacks run.

``eps`` given in standard deviations becomes one number for every feature (``eps * std_j`` in raw units of
feature ``j``), and each feature stays inside the data's own ``[min, max]``.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from pruneguard.errors import IncompatibleModelError
from pruneguard.models.layers import Normalize

__all__ = ["FeatureBox"]


class FeatureBox(nn.Module):
    """A tabular model seen from its standardised feature space, rescaled to the unit box ``[0, 1]^F``.

    ``forward(u)`` maps ``u`` (``(N, F)`` or ``(N, 1, 1, F)``, the latter lets image-only attacks such as Square
    run) to ``z = z0 + u * width`` (standardised units, one scale for all features), clamps every feature to
    the data's ``[min, max]`` and calls ``model(z * std + mean)``. ``std``/``mean`` are those of the model's
    :class:`~pruneguard.models.Normalize` layer, so ``model``'s function is unchanged: an L-inf budget of
    ``eps`` standard deviations is ``eps / width`` here. The wrapped model is shared, not copied.
    """

    mean: Tensor
    std: Tensor
    z_low: Tensor
    z_high: Tensor

    def __init__(self, model: nn.Module, mean: Tensor, std: Tensor, z_low: Tensor, z_high: Tensor) -> None:
        super().__init__()
        self.model = model
        for name, t in (("mean", mean), ("std", std), ("z_low", z_low), ("z_high", z_high)):
            self.register_buffer(name, t.detach().float().flatten().clone())
        self.z0 = float(z_low.min())
        self.width = max(float(z_high.max()) - self.z0, 1e-6)

    @classmethod
    def for_model(cls, model: nn.Module, *data: Tensor) -> FeatureBox:
        """Bounds from the rows of ``data`` (raw features ``(N, F)``), scale from ``model``'s Normalize layer."""
        norm = next((m for m in model.modules() if isinstance(m, Normalize)), None)
        if norm is None:
            raise IncompatibleModelError("a tabular model needs a Normalize first layer (its feature mean/std)")
        x = torch.cat([d.detach().float().flatten(1) for d in data])
        mean = cast(Tensor, norm.mean).detach().float().flatten().expand(x.shape[1])
        std = cast(Tensor, norm.std).detach().float().flatten().expand(x.shape[1])
        return cls(model, mean, std, (x.min(0).values - mean) / std, (x.max(0).values - mean) / std)

    def forward(self, u: Tensor) -> Tensor:
        z = torch.clamp(self.z0 + u.flatten(1) * self.width, self.z_low, self.z_high)
        return self.model(z * self.std + self.mean)

    def unit_bounds(self) -> tuple[Tensor, Tensor]:
        """Every feature's data ``[min, max]`` in unit coordinates, shaped ``(1, 1, F)`` (for PGD's box)."""
        lo, hi = ((b - self.z0) / self.width for b in (self.z_low, self.z_high))
        return lo.view(1, 1, -1), hi.view(1, 1, -1)

    def to_unit(self, x: Tensor) -> Tensor:
        """Raw features ``(N, F)`` -> ``(N, 1, 1, F)`` inside :meth:`unit_bounds`."""
        z = torch.clamp((x.float().flatten(1) - self.mean) / self.std, self.z_low, self.z_high)
        lo, hi = self.unit_bounds()
        return torch.clamp((z - self.z0) / self.width, lo.view(1, -1), hi.view(1, -1)).view(x.shape[0], 1, 1, -1)

    def to_raw(self, u: Tensor) -> Tensor:
        z = torch.clamp(self.z0 + u.flatten(1) * self.width, self.z_low, self.z_high)
        return z * self.std + self.mean

    def wrap(self, model: nn.Module) -> FeatureBox:
        """The same view (bounds and scale) around another model, e.g. its pruned or int8 version."""
        return FeatureBox(model, self.mean, self.std, self.z_low, self.z_high)
