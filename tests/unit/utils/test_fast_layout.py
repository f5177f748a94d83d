"""fast_layout: channels_last inside the block for BatchNorm conv nets on the CPU, the usual layout after."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.models import create_model
from pruneguard.models.fit import TrainConfig, fit_
from pruneguard.pruning.anp import ANPConfig, anp_optimize
from pruneguard.scan.reversal import ReversalConfig, reverse_trigger
from pruneguard.utils.modes import LAYOUT_ENV, fast_layout, layout_setting

CL = torch.channels_last


def _net(arch: str = "small_cnn") -> nn.Module:
    torch.manual_seed(0)
    return create_model(arch, num_classes=10, input_shape=(1, 28, 28), mean=(0.5,), std=(0.25,), width=0.5)


def _convs(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[1] > 1]


def test_inside_the_block_the_convolutions_are_channels_last_and_the_layout_comes_back_after() -> None:
    model = _net()
    params = list(model.parameters())
    assert not any(w.is_contiguous(memory_format=CL) for w in _convs(model))
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))  # one input channel: ambiguous strides
    seen: list[torch.Tensor] = []
    handle = first.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with fast_layout(model):
        assert all(w.is_contiguous(memory_format=CL) for w in _convs(model))
        out = model(torch.rand(4, 1, 28, 28))
        assert out.shape == (4, 10)
    handle.remove()
    # the first activations (the largest, pooled next) are channels_last from an NCHW batch
    assert seen[0].is_contiguous(memory_format=CL) and not seen[0].is_contiguous()
    assert all(w.is_contiguous() and not w.is_contiguous(memory_format=CL) for w in _convs(model))
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]  # same Parameter objects


def test_values_are_unchanged_and_outputs_and_gradients_agree_to_rounding() -> None:
    model = _net("gap_cnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(8, 1, 28, 28)
    model.eval()
    ref = model(x)
    ref.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with fast_layout(model):
        out = model(x)
        out.sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_nested_blocks_convert_once_and_the_outer_block_restores() -> None:
    model = _net()
    with fast_layout(model):
        with fast_layout(model):
            pass
        assert all(w.is_contiguous(memory_format=CL) for w in _convs(model))  # the inner block left it
    assert not any(w.is_contiguous(memory_format=CL) for w in _convs(model))


class _TutorialNet(nn.Module):
    """A user's network in the PyTorch tutorial's style: it flattens with ``view``, which channels_last breaks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 14 * 14, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(self.conv2(torch.relu(self.bn(self.conv(x)))), 2)
        return self.fc(x.view(x.size(0), -1))


def test_a_users_module_class_keeps_pytorchs_layout_so_its_view_still_works() -> None:
    model = _TutorialNet().eval()
    x = torch.rand(2, 1, 28, 28)
    with fast_layout(model):
        assert not model.conv2.weight.is_contiguous(memory_format=CL)
        assert model(x).shape == (2, 10)
    model.to(memory_format=CL)  # what the block would have done: the user's view fails
    with pytest.raises(RuntimeError, match="view"):
        model(x)


@pytest.mark.parametrize("case", ["groupnorm", "no_conv", "env_default"])
def test_models_it_must_not_touch_are_left_as_they_are(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if case == "groupnorm":
        model = _net("gn_cnn")
    elif case == "no_conv":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    else:
        monkeypatch.setenv(LAYOUT_ENV, "default")
        model = _net()
    with fast_layout(model):
        assert not any(w.is_contiguous(memory_format=CL) for w in _convs(model))


def test_library_loops_leave_the_callers_layout_as_it_was() -> None:
    model = _net()
    data = ArrayData(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)), 10)
    fit_(model, data, TrainConfig(epochs=1, batch_size=32, seed=0))
    reverse_trigger(model, data, 1, ReversalConfig(steps=3, batch_size=32))
    assert all(w.is_contiguous() and not w.is_contiguous(memory_format=CL) for w in _convs(model))


def test_anp_and_reversal_in_either_layout_agree_to_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = ArrayData(torch.rand(96, 1, 28, 28), torch.randint(0, 10, (96,)), 10)
    model = _net()
    masks, sizes = [], []
    for layout in ("default", "channels_last"):
        monkeypatch.setenv(LAYOUT_ENV, layout)
        masks.append(anp_optimize(model, data, ANPConfig(iterations=5, batch_size=32)).masks)
        sizes.append(reverse_trigger(model, data, 2, ReversalConfig(steps=5, batch_size=32)).mask_l1)
    torch.testing.assert_close(masks[1], masks[0], rtol=1e-3, atol=1e-4)
    assert sizes[1] == pytest.approx(sizes[0], rel=1e-3)


def test_an_unknown_layout_setting_is_refused_with_the_accepted_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LAYOUT_ENV, "nhwc")
    with pytest.raises(
        ConfigError, match=r"PRUNEGUARD_LAYOUT='nhwc' is not accepted; accepted: channels_last, default"
    ):
        with fast_layout(_net()):
            pass
    monkeypatch.delenv(LAYOUT_ENV)
    assert layout_setting() == "channels_last"
