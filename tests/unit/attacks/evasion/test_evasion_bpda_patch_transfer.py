"""BPDA wrapper, universal adversarial patch and transfer attack."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import Tensor, nn

from pruneguard.attacks.evasion import (
    PGD,
    BPDAWrapper,
    PatchAttack,
    TransferAttack,
    bpda,
    paste_patch,
    pgd,
    train_universal_patch,
)
from pruneguard.errors import ConfigError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _acc(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


class _Quantize(nn.Module):
    """Input quantisation to 4 levels under no_grad: a non-differentiable pre-processing defence."""

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.round(x * 3) / 3


def _dynamic_int8(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def test_bpda_straight_through_on_a_non_differentiable_preprocessing(
    model: nn.Module, batch: tuple[Tensor, Tensor]
) -> None:
    x = batch[0][:8].clone().requires_grad_(True)
    defended = nn.Sequential(_Quantize(), model)
    assert torch.autograd.grad(defended(x).sum(), x, allow_unused=True) == (None,)  # no gradient through it
    wrapped = nn.Sequential(BPDAWrapper(_Quantize()), model)  # identity on the backward pass
    out = wrapped(x)
    assert torch.equal(out, defended(x))
    (grad,) = torch.autograd.grad(out.logsumexp(1).sum(), x)
    assert float(grad.abs().sum()) > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_bpda_on_a_dynamic_int8_model() -> None:
    torch.manual_seed(0)
    float_model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    quantized = _dynamic_int8(float_model)
    x = torch.rand(32, 1, 8, 8, generator=_gen(1))
    with torch.no_grad():
        y = quantized(x).argmax(1)
    wrapped = bpda(quantized, float_model)
    x_in = x.clone().requires_grad_(True)
    out = wrapped(x_in)
    assert torch.equal(out, quantized(x))  # predicts exactly like the int8 model
    (grad,) = torch.autograd.grad(out.logsumexp(1).sum(), x_in)
    assert float(grad.abs().sum()) > 0
    x_adv = pgd(wrapped, x, y, eps=0.05, step_size=0.01, steps=10, generator=_gen())
    assert _acc(quantized, x_adv, y) < 0.5  # the int8 model itself is fooled


def test_bpda_checks_shapes_and_types() -> None:
    with pytest.raises(TypeError, match="forward_module"):
        BPDAWrapper(lambda x: x)  # type: ignore[arg-type]
    wrapped = BPDAWrapper(nn.Linear(4, 3), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="must match"):
        wrapped(torch.rand(2, 4))


def test_paste_patch_is_differentiable_and_places_per_image() -> None:
    x = torch.zeros(2, 3, 6, 6)
    patch = torch.ones(3, 2, 2, requires_grad=True)
    out = paste_patch(x, patch, torch.tensor([0, 4]), torch.tensor([1, 3]))
    assert torch.equal(out[0, :, 0:2, 1:3], torch.ones(3, 2, 2)) and torch.equal(
        out[1, :, 4:6, 3:5], torch.ones(3, 2, 2)
    )
    assert float(out.detach().sum()) == 2 * 3 * 4
    (grad,) = torch.autograd.grad(out.sum(), patch)
    assert torch.equal(grad, torch.full((3, 2, 2), 2.0))


def test_universal_patch_beats_a_random_patch(model: nn.Module, motif_data: tuple[Tensor, ...]) -> None:
    x_train, _, x_test, y_test = motif_data
    target = 1
    patch = train_universal_patch(
        model, x_train, patch_size=3, target=target, steps=60, lr=0.1, batch_size=64, generator=_gen(2)
    )
    assert patch.shape == (1, 3, 3) and float(patch.min()) >= 0 and float(patch.max()) <= 1
    others = y_test != target
    rates = []
    for p in (patch, torch.rand(1, 3, 3, generator=_gen(5))):
        x_adv = PatchAttack(p)(model, x_test[others], y_test[others], generator=_gen(3))
        with torch.no_grad():
            rates.append(float((model(x_adv).argmax(1) == target).float().mean()))
    trained, baseline = rates  # measured: 1.00 vs 0.21
    assert trained >= baseline + 0.3, f"targeted success: universal patch {trained:.2f}, random {baseline:.2f}"


def test_universal_patch_accepts_batches_and_fixed_locations(model: nn.Module, motif_data: tuple[Tensor, ...]) -> None:
    x, y = motif_data[:2]
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 64, 32)]
    patch = train_universal_patch(model, batches, patch_size=(2, 3), target=0, steps=3, lr=0.1)
    assert patch.shape == (1, 2, 3)
    out = PatchAttack(patch, location=(5, 4))(None, x[:4], y[:4])
    assert torch.equal(out[:, :, 5:7, 4:7], patch.expand(4, 1, 2, 3))
    with pytest.raises(ConfigError, match="does not fit"):
        PatchAttack(patch, location=(7, 0))(None, x[:4], y[:4])
    with pytest.raises(ConfigError, match=r"target=9 is outside \[0, 3\]"):
        train_universal_patch(model, x, patch_size=2, target=9, steps=1, lr=0.1)
    with pytest.raises(ConfigError, match=r"patch values are outside \[0, 1\]"):
        PatchAttack(torch.full((1, 2, 2), 2.0))
    with pytest.raises(ConfigError, match=r"location='center'; accepted: None or 'random', or \(row, col\)"):
        PatchAttack(patch, location="center")  # type: ignore[arg-type]
    assert PatchAttack(patch, location="random").location is None


def test_transfer_attack_crafts_on_the_surrogate_only(model: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch
    inner = PGD(eps=0.2, step_size=0.05, steps=10)
    target_model = copy.deepcopy(model)
    attack = TransferAttack(source=model, attack=inner)
    x_adv = attack(target_model, x, y, generator=_gen())
    assert torch.equal(x_adv, inner(model, x, y, generator=_gen()))  # the target model played no part
    assert attack.eps == 0.2
    assert _acc(target_model, x_adv, y) < 0.5  # an identical surrogate transfers perfectly
    with pytest.raises(TypeError, match="accepted: an nn.Module"):
        TransferAttack(source="model", attack=inner)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="accepted: an attack object"):
        TransferAttack(source=model, attack=PGD)
