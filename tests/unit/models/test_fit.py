"""``pruneguard.models.fit``: the bare loop trains exactly as the checkpointing trainer does."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pruneguard.data.tensors import ArrayData
from pruneguard.models import create_model
from pruneguard.models.fit import TrainConfig, fit_
from pruneguard.training import train_model


def _data() -> ArrayData:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 2
    x = torch.rand(64, 1, 8, 8, generator=g) * 0.3
    x[y == 1, :, :4] += 0.6
    return ArrayData(x.clamp(0, 1), y, 2)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(
        "small_cnn", num_classes=2, input_shape=(1, 8, 8), mean=(0.5,), std=(0.3,), width=0.25, hidden=8
    )


class _Flip:
    """A hook that draws from its own generator: it flips a random half of each batch's images upside down."""

    def __init__(self) -> None:
        self.generator = torch.Generator().manual_seed(7)

    def batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pick = torch.rand(x.shape[0], generator=self.generator) < 0.5
        return torch.where(pick.view(-1, 1, 1, 1), x.flip(-2), x), y, torch.zeros(())

    def zero_grad(self) -> None:
        pass

    def step(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def test_fit_gives_the_weights_and_history_of_train_model_with_and_without_a_hook() -> None:
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, crop_padding=1, hflip=True, seed=3)
    for hook in (None, "flip"):
        a, b = _model(), _model()
        history = fit_(a, _data(), cfg, hook=_Flip() if hook else None)
        result = train_model(b, _data(), cfg, hook=_Flip() if hook else None)
        assert not a.training and history == result.history and len(history) == 2
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(va, vb), k
