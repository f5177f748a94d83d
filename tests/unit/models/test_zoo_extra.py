"""The zoo's extra architectures build and run forward; the reduced-width nets fit digits and Fashion-MNIST."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruneguard.models import create_model


@pytest.mark.parametrize("arch", ["plain_cnn", "gn_cnn", "preact_resnet18", "vgg11_bn"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8)])
def test_reduced_width_model_runs_forward(arch: str, shape: tuple[int, int, int]) -> None:
    model = create_model(arch, num_classes=10, input_shape=shape, mean=(0.3,), std=(0.3,), width=0.125)
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, 10) and bool(torch.isfinite(out).all())
    out.sum().backward()  # trainable end to end
    assert all(p.grad is not None for p in model.parameters())


def test_plain_cnn_has_no_norm_layer_and_gn_cnn_only_groupnorm() -> None:
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
    plain = create_model("plain_cnn", num_classes=10, input_shape=(1, 8, 8), width=0.25)
    assert not any(isinstance(m, norms) for m in plain.modules())
    gn = create_model("gn_cnn", num_classes=10, input_shape=(1, 8, 8), width=0.3, groups=4)
    groupnorms = [m for m in gn.modules() if isinstance(m, nn.GroupNorm)]
    assert len(groupnorms) == 3 and not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    assert all(m.num_channels % m.num_groups == 0 for m in groupnorms)  # widths that 4 does not divide still build
    with pytest.raises(ValueError, match="groups=0"):
        create_model("gn_cnn", num_classes=10, input_shape=(1, 8, 8), groups=0)
