"""Post-training int8 quantization: a new model, close to the float one, with real quantized modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError, UnknownNameError
from pruneguard.models import create_model
from pruneguard.pruning import MagnitudePruner, apply_plan_
from pruneguard.pruning.base import is_masked
from pruneguard.quantization import QUANTIZERS, is_quantized, quantize


def _task(shape: tuple[int, ...], n: int, seed: int) -> ArrayData:
    """Label = which of 4 input regions is brightest (learnable by a tiny model in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    flat = x.flatten(1)
    y = flat.reshape(n, 4, -1).mean(2).argmax(1)
    return ArrayData(x, y, 4)


def _trained(arch: str, shape: tuple[int, ...], **kwargs: object) -> tuple[nn.Module, ArrayData]:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, input_shape=shape, mean=(0.5,), std=(0.29,), **kwargs)
    data = _task(shape, 256, 0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(2):
        for i in range(0, 256, 64):
            loss = F.cross_entropy(model(data.x[i : i + 64]), data.y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), data


@pytest.fixture(scope="module")
def cnn() -> tuple[nn.Module, ArrayData]:
    return _trained("small_cnn", (1, 8, 8), width=0.25, hidden=16)


@pytest.fixture(scope="module")
def cnn_int8(cnn: tuple[nn.Module, ArrayData]) -> tuple[nn.Module, dict[str, torch.Tensor], nn.Module]:
    model, data = cnn
    before = {k: v.clone() for k, v in model.state_dict().items()}
    uint8 = ArrayData((data.x * 255).round().to(torch.uint8), data.y, 4)  # the clean split as stored on disk
    return model, before, quantize(model, "static_int8", calibration=uint8)


def _agreement(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a(x).argmax(1) == b(x).argmax(1)).float().mean())


def test_static_int8_is_a_new_quantized_model_close_to_float(cnn_int8) -> None:
    model, _, qmodel = cnn_int8
    assert qmodel is not model
    assert is_quantized(qmodel) and not is_quantized(model)
    kinds = {type(m).__module__ for m in qmodel.modules()}
    assert any(k.startswith("torch.ao.nn.intrinsic.quantized") or k.startswith("torch.ao.nn.quantized") for k in kinds)
    x = torch.rand(256, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    out = qmodel(x)
    assert out.dtype == torch.float32 and out.shape == (256, 4)
    assert _agreement(model, qmodel, x) >= 0.9
    with torch.no_grad():
        ref = model(x)
    assert float((out - ref).abs().max()) <= 0.25 * float(ref.abs().max())


def test_input_model_is_not_mutated(cnn_int8) -> None:
    model, before, _ = cnn_int8
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training
    assert all(type(m).__module__.startswith(("torch.nn", "pruneguard")) for m in model.modules())


def test_dynamic_int8_on_mlp_and_static_on_mlp() -> None:
    model, data = _trained("mlp", (12,))
    x = torch.rand(256, 12, generator=torch.Generator().manual_seed(3))
    dyn = quantize(model, "dynamic_int8")
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in dyn.modules())
    assert _agreement(model, dyn, x) >= 0.9
    engine = torch.backends.quantized.engine
    static = quantize(model, "static_int8", calibration=data, backend="qnnpack")
    assert torch.backends.quantized.engine == engine  # the global engine is restored
    assert is_quantized(static) and _agreement(model, static, x) >= 0.9


def test_masked_model_quantizes_and_keeps_its_masks(cnn) -> None:
    model, data = cnn
    masked = create_model("small_cnn", num_classes=4, input_shape=(1, 8, 8), width=0.25, hidden=16).eval()
    masked.load_state_dict(model.state_dict())
    apply_plan_(masked, MagnitudePruner(sparsity=0.3).plan(masked))
    qmodel = quantize(masked, "dynamic_int8")
    assert is_quantized(qmodel) and is_masked(masked.features[0])
    assert qmodel(data.x[:4]).shape == (4, 4)


def test_bad_arguments(cnn) -> None:
    model, data = cnn
    assert set(QUANTIZERS.names()) == {"static_int8", "dynamic_int8"}
    with pytest.raises(ConfigError, match="calibration"):
        quantize(model, "static_int8")
    with pytest.raises(UnknownNameError):
        quantize(model, "int4")
    with pytest.raises(ConfigError, match="backend"):
        quantize(model, "dynamic_int8", backend="tensorrt")
    with pytest.raises(TypeError):
        quantize(model, "static_int8", calibration=data.x)  # type: ignore[arg-type]
