"""ANP, the neuron scan and pruning on a residual net with bias-less convolutions, GroupNorm and LayerNorm
(no BatchNorm anywhere): masks sit on the norms' affine scales, and only the parameters a layer has are perturbed."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData
from pruneguard.pruning import ANPConfig, NeuronReparam, anp_optimize, find_neuron_groups, prune_neurons_
from pruneguard.scan.sensitivity import ScanConfig, scan_model


class GNResNet(nn.Module):
    """conv(no bias) -> GroupNorm -> ReLU, a residual block of the same, then LayerNorm features and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.gn0 = nn.GroupNorm(2, 8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.gn1 = nn.GroupNorm(4, 8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.gn2 = nn.GroupNorm(4, 8)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32, 12, bias=False)
        self.ln = nn.LayerNorm(12)
        self.head = nn.Linear(12, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.gn0(self.stem(x)))
        r = torch.relu(self.gn1(self.conv1(h)))
        h = torch.relu(h + self.gn2(self.conv2(r)))
        z = torch.relu(self.ln(self.fc(self.pool(h).flatten(1))))
        return self.head(z)


def _model_and_data() -> tuple[nn.Module, ArrayData]:
    torch.manual_seed(0)
    model = GNResNet().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm | nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(0)
    return model, ArrayData(torch.rand(24, 1, 8, 8, generator=g), torch.arange(24) % 3, 3)


def test_groups_are_the_norm_scales_with_their_biases() -> None:
    model, data = _model_and_data()
    groups = find_neuron_groups(model, data.x[:2])
    assert [(g.module, g.kind, g.size) for g in groups] == [
        ("gn0", "norm", 8),
        ("gn1", "norm", 8),
        ("gn2", "norm", 8),
        ("ln", "norm", 12),
    ]  # the bias-less convs and fc are covered by the norm masks, the head is never masked


def test_neutral_reparam_is_the_model_and_masks_scale_only() -> None:
    model, data = _model_and_data()
    reparam = NeuronReparam(model, find_neuron_groups(model, data.x[:2]))
    with torch.no_grad():
        torch.testing.assert_close(reparam.forward(data.x, torch.ones(reparam.total)), model(data.x))


def test_anp_runs_and_pruning_zeroes_the_chosen_scales() -> None:
    model, data = _model_and_data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for fast in (False, True):
        result = anp_optimize(model, data, ANPConfig(iterations=3, batch_size=8, fast=fast, checkpoint_every=1))
        assert result.masks.shape == (36,) and bool(torch.isfinite(result.masks).all())
        assert result.iterations == 3 and len(result.history) == 3
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # ANP never modifies the model
    prune_neurons_(model, result.groups, torch.tensor([0, 9, 30]))
    w = model.state_dict()
    assert float(w["gn0.weight"][0]) == 0.0 and float(w["gn1.weight"][1]) == 0.0
    assert float(w["ln.weight"][6]) == 0.0 and float(w["gn0.weight"][1]) != 0.0
    assert bool(torch.isfinite(model(data.x)).all())


def test_neuron_scan_runs_on_it() -> None:
    model, data = _model_and_data()
    result = scan_model(model, data, ScanConfig(eps=(0.3,), steps=1, restarts=1, batch_size=8))
    assert result.neurons == 36 and 0.0 <= result.curve[0]["error_rate"] <= 1.0
