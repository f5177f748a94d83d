"""ANP parts: neutral reparametrisation, ascent step, clamping, pruning, frozen weights, resume, determinism."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.models import create_model
from pruneguard.pruning import (
    ANPConfig,
    NeuronReparam,
    anp_optimize,
    fast_iteration,
    find_neuron_groups,
    mask_step,
    perturbation_step,
    prune_neurons_,
)
from pruneguard.utils.modes import anp_mode


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model(
        "small_cnn", num_classes=3, input_shape=(1, 8, 8), mean=(0.5,), std=(0.25,), width=0.25, hidden=8
    )
    with torch.no_grad():  # non-trivial BN affine parameters and running stats
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def tiny_data(n: int = 48, seed: int = 0) -> ArrayData:
    g = torch.Generator().manual_seed(seed)
    return ArrayData(torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 3, 3)


def test_groups_cover_bn_layers_and_skip_classifier() -> None:
    model = tiny_model()
    groups = find_neuron_groups(model, torch.rand(2, 1, 8, 8))
    assert [g.kind for g in groups] == ["norm", "norm", "norm"]
    assert [g.module for g in groups] == ["features.1", "features.5", "classifier.2"]
    assert all(g.module != "classifier.4" for g in groups)


def test_conv_without_norm_is_masked_on_output_channels() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5), nn.ReLU(), nn.Linear(5, 2)
    )
    groups = find_neuron_groups(model, torch.rand(2, 1, 8, 8))
    assert [(g.module, g.kind, g.size) for g in groups] == [("0", "conv", 4), ("3", "linear", 5)]


class _PreActBlock(nn.Module):
    """conv -> (+ shortcut) -> BN: the conv reaches a norm layer only through the residual addition."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        h = h + self.conv(torch.relu(self.bn1(h)))
        return self.head(torch.relu(self.bn2(h)).mean((2, 3)))


def test_conv_reaching_norm_through_residual_add_is_covered_by_the_norm() -> None:
    # as the reference code on PreAct-ResNet: only the BatchNorm layers carry masks
    groups = find_neuron_groups(_PreActBlock(), torch.rand(2, 1, 8, 8))
    assert [(g.module, g.kind) for g in groups] == [("bn1", "norm"), ("bn2", "norm")]


def test_conv_behind_a_channel_mixing_op_stays_masked() -> None:
    # conv -> flatten -> BatchNorm1d over C*H*W features: the norm's neurons are not the conv's channels
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 6), nn.BatchNorm1d(6), nn.Linear(6, 2))
    groups = find_neuron_groups(model, torch.rand(2, 1, 8, 8))
    assert [(g.module, g.kind) for g in groups] == [("0", "conv"), ("3", "norm")]


def test_mask_one_and_zero_noise_leave_outputs_unchanged() -> None:
    model, x = tiny_model(), torch.rand(6, 1, 8, 8)
    groups = find_neuron_groups(model, x[:2])
    rep = NeuronReparam(model, groups)
    ones, zeros = torch.ones(rep.total), torch.zeros(rep.total)
    with torch.no_grad():
        ref = model(x)
        assert torch.allclose(rep.forward(x, ones), ref, atol=1e-6)
        assert torch.allclose(rep.forward(x, ones, zeros, zeros), ref, atol=1e-6)
        changed = rep.forward(x, ones * 0.5)
    assert not torch.allclose(changed, ref, atol=1e-3)


def test_ascent_step_increases_loss() -> None:
    model, data = tiny_model(), tiny_data()
    x, y = data.x, data.y
    groups = find_neuron_groups(model, x[:2])
    rep = NeuronReparam(model, groups)
    mask = torch.ones(rep.total)
    cfg = ANPConfig(eps=0.2, steps=1, rand_init=False)
    with anp_mode(model), torch.no_grad():
        base = F.cross_entropy(rep.forward(x, mask), y)
    with anp_mode(model):
        nw, nb = perturbation_step(rep, x, y, mask, cfg, None)
        with torch.no_grad():
            adv = F.cross_entropy(rep.forward(x, mask, nw, nb), y)
    assert adv > base
    assert torch.allclose(nw.abs(), torch.full_like(nw, 0.2))  # one signed step of size eps from zero


def test_noise_is_projected_only_when_asked() -> None:
    model, data = tiny_model(), tiny_data()
    rep = NeuronReparam(model, find_neuron_groups(model, data.x[:2]))
    mask = torch.ones(rep.total)
    g = torch.Generator().manual_seed(0)
    with anp_mode(model):
        nw, _ = perturbation_step(rep, data.x, data.y, mask, ANPConfig(eps=0.3, steps=1), g)
        cw, _ = perturbation_step(rep, data.x, data.y, mask, ANPConfig(eps=0.3, steps=1, clip_noise=True), g)
    assert float(nw.abs().max()) > 0.3 + 1e-6  # uniform start + full step leaves the ball (reference behaviour)
    assert float(cw.abs().max()) <= 0.3 + 1e-6


def test_mask_step_clamps_to_unit_interval() -> None:
    model, data = tiny_model(), tiny_data()
    rep = NeuronReparam(model, find_neuron_groups(model, data.x[:2]))
    mask = torch.full((rep.total,), 0.5, requires_grad=True)
    with torch.no_grad():
        mask[:3] = 1.0
        mask[3:6] = 0.0
    opt = torch.optim.SGD([mask], lr=1000.0)  # huge step: clamping must hold
    with anp_mode(model):
        mask_step(rep, data.x, data.y, mask, opt, None, 0.2)
    assert float(mask.detach().min()) >= 0.0 and float(mask.detach().max()) <= 1.0
    assert bool(((mask == 0) | (mask == 1)).any())


def test_no_weight_gradients_and_model_untouched() -> None:
    model, data = tiny_model(), tiny_data()
    before = copy.deepcopy(model.state_dict())
    flags = [p.requires_grad for p in model.parameters()]
    model.train()
    anp_optimize(model, data, ANPConfig(iterations=3, batch_size=16))
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BN running statistics unchanged


def test_pruning_zeroes_exactly_the_chosen_neurons() -> None:
    model = tiny_model()
    groups = find_neuron_groups(model, torch.rand(2, 1, 8, 8))
    sizes = [g.size for g in groups]
    chosen = torch.tensor([0, sizes[0], sizes[0] + 3, sum(sizes) - 1])
    pruned = copy.deepcopy(model)
    prune_neurons_(pruned, groups, chosen)
    params, orig = dict(pruned.named_parameters()), dict(model.named_parameters())
    flat_w = torch.cat([params[g.weight].detach() for g in groups])
    flat_o = torch.cat([orig[g.weight].detach() for g in groups])
    zero = torch.zeros(sum(sizes), dtype=torch.bool)
    zero[chosen] = True
    assert torch.all(flat_w[zero] == 0)
    assert torch.equal(flat_w[~zero], flat_o[~zero])
    for g in groups:  # biases kept
        assert torch.equal(params[g.bias], orig[g.bias])


def test_same_seed_same_masks_and_resume_is_bit_identical(tmp_path) -> None:
    model, data = tiny_model(), tiny_data()
    cfg = ANPConfig(iterations=12, batch_size=16, checkpoint_every=4, seed=3)
    full = anp_optimize(model, data, cfg)
    again = anp_optimize(model, data, cfg)
    assert torch.equal(full.masks, again.masks)
    state = tmp_path / "anp_state.pt"
    partial = anp_optimize(model, data, cfg, state_path=state, stop_after=8)
    assert partial.iterations == 8
    resumed = anp_optimize(model, data, cfg, state_path=state, resume=True)
    assert torch.equal(resumed.masks, full.masks)
    assert not torch.equal(partial.masks, full.masks)
    assert full.mask_mean is not None and resumed.mask_mean is not None
    assert torch.allclose(resumed.mask_mean, full.mask_mean)  # the running sum travels with the state


def test_mask_mean_is_the_mean_of_the_masks_over_the_iterations() -> None:
    model, data = tiny_model(), tiny_data()
    means = []
    for n in (1, 2):
        res = anp_optimize(model, data, ANPConfig(iterations=n, batch_size=16, seed=3))
        means.append(res)
    first, second = means
    assert first.mask_mean is not None and second.mask_mean is not None
    assert torch.allclose(first.mask_mean, first.masks)  # one iteration: the mean is the mask
    assert torch.allclose(second.mask_mean, (first.masks + second.masks) / 2)  # same seed: same first step


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match=r"^eps=2.0 is not accepted; accepted: \[0, 1\]"):
        ANPConfig(eps=2.0)
    with pytest.raises(ConfigError, match=r"^iterations=0 is not accepted"):
        ANPConfig(iterations=0)


def test_masks_drop_for_neurons_that_hurt_under_perturbation() -> None:
    """A toy backdoor: one hidden neuron is dormant on clean data but drives class 0 when scaled up.

    ANP must give it a lower mask than the useful neurons."""
    torch.manual_seed(0)
    n = 256
    x = torch.randn(n, 2)
    y = (x[:, 0] > 0).long()
    lin1 = nn.Linear(2, 3, bias=False)
    bn = nn.BatchNorm1d(3)
    lin2 = nn.Linear(3, 2)
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 0.05]]))
        bn.weight.copy_(torch.tensor([1.0, 1.0, 0.1]))
        bn.bias.copy_(torch.tensor([0.0, 0.0, 0.0]))
        lin2.weight.copy_(torch.tensor([[-2.0, 2.0, 30.0], [2.0, -2.0, -30.0]]))
        lin2.bias.zero_()
    model = nn.Sequential(lin1, bn, nn.ReLU(), lin2)
    model.eval()
    data = ArrayData(x, y, 2)
    res = anp_optimize(model, data, ANPConfig(iterations=150, batch_size=64, eps=0.4, augment=False))
    assert float(res.masks[2]) < float(res.masks[:2].min())


def test_state_of_another_model_is_not_resumed(tmp_path) -> None:
    data = tiny_data()
    cfg = ANPConfig(iterations=6, batch_size=16, checkpoint_every=2, seed=1)
    state = tmp_path / "s.pt"
    anp_optimize(tiny_model(seed=5), data, cfg, state_path=state, stop_after=4)
    fresh = anp_optimize(tiny_model(seed=0), data, cfg)
    resumed = anp_optimize(tiny_model(seed=0), data, cfg, state_path=state, resume=True)
    assert torch.equal(fresh.masks, resumed.masks)  # the other model's state was ignored


def test_fast_iteration_equals_reference_when_the_ascent_starts_at_zero() -> None:
    """Without a random start the reference's first ascent gradient is taken at zero noise, which is exactly what
    the fast variant reuses from the natural pass: both must give the same mask update. (Targeted, they differ:
    the reference's ascent pass sees only the non-target rows, so its BatchNorm batch statistics differ.)"""
    model, data = tiny_model(), tiny_data()
    rep = NeuronReparam(model, find_neuron_groups(model, data.x[:2]))
    cfg = ANPConfig(eps=0.3, rand_init=False)
    masks = []
    for fast in (False, True):
        mask = torch.full((rep.total,), 0.9, requires_grad=True)
        opt = torch.optim.SGD([mask], lr=0.2, momentum=0.9)
        with anp_mode(model):
            if fast:
                fast_iteration(rep, data.x, data.y, mask, opt, cfg, None)
            else:
                noise = perturbation_step(rep, data.x, data.y, mask, cfg, None)
                mask_step(rep, data.x, data.y, mask, opt, noise, cfg.alpha)
        masks.append(mask.detach())
    assert not torch.equal(masks[0], torch.full_like(masks[0], 0.9))
    torch.testing.assert_close(masks[1], masks[0], rtol=1e-5, atol=1e-6)


def test_fast_iteration_with_several_steps_differs_and_keeps_weights_frozen() -> None:
    model, data = tiny_model(), tiny_data()
    before = copy.deepcopy(model.state_dict())
    one = anp_optimize(model, data, ANPConfig(iterations=4, batch_size=16, fast=True, augment=False))
    two = anp_optimize(model, data, ANPConfig(iterations=4, batch_size=16, fast=True, steps=2, augment=False))
    ref = anp_optimize(model, data, ANPConfig(iterations=4, batch_size=16, augment=False))
    assert not torch.equal(one.masks, two.masks)
    assert not torch.equal(one.masks, ref.masks)  # the random start makes the variants differ
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_fast_variant_finds_the_toy_backdoor_neuron_too() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 2)
    y = (x[:, 0] > 0).long()
    lin1, bn, lin2 = nn.Linear(2, 3, bias=False), nn.BatchNorm1d(3), nn.Linear(3, 2)
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 0.05]]))
        bn.weight.copy_(torch.tensor([1.0, 1.0, 0.1]))
        bn.bias.zero_()
        lin2.weight.copy_(torch.tensor([[-2.0, 2.0, 30.0], [2.0, -2.0, -30.0]]))
        lin2.bias.zero_()
    model = nn.Sequential(lin1, bn, nn.ReLU(), lin2).eval()
    res = anp_optimize(model, ArrayData(x, y, 2), ANPConfig(iterations=150, batch_size=64, augment=False, fast=True))
    assert float(res.masks[2]) < float(res.masks[:2].min())
