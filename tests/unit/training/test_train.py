from __future__ import annotations

import pytest
import torch

from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.models import create_model
from pruneguard.models.fit import TrainConfig
from pruneguard.training import train_model


def data() -> ArrayData:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 3
    x = torch.rand(96, 1, 8, 8, generator=g) * 0.3
    x[y == 1, :, :4] += 0.6
    x[y == 2, :, 4:] += 0.6
    return ArrayData(x.clamp(0, 1), y, 3)


def model():
    torch.manual_seed(0)
    return create_model(
        "small_cnn", num_classes=3, input_shape=(1, 8, 8), mean=(0.5,), std=(0.3,), width=0.25, hidden=8
    )


def test_training_learns_and_resume_matches_uninterrupted(tmp_path) -> None:
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, crop_padding=1, seed=1)
    full = model()
    res = train_model(full, data(), cfg)
    assert res.history[-1]["train_accuracy"] > res.history[0]["train_accuracy"]
    ckpt = tmp_path / "ckpt.pt"
    killed = model()
    train_model(killed, data(), cfg, checkpoint=ckpt, stop_after=2)  # the process "dies" after epoch 2
    resumed = model()
    out = train_model(resumed, data(), cfg, checkpoint=ckpt)
    assert [h["epoch"] for h in out.history] == [1, 2, 3]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="--epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="--schedule"):
        TrainConfig(schedule="linear")
