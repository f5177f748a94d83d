"""Model files: round trip, metadata, safe loading, corrupt files."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

from pruneguard.errors import ConfigError, IncompatibleModelError, UnsafeModelError
from pruneguard.models import ModelMeta, create_model, list_models, load_model, read_meta, save_model


def meta(**kw) -> ModelMeta:
    base = dict(
        arch="small_cnn",
        num_classes=3,
        input_shape=(1, 8, 8),
        mean=(0.5,),
        std=(0.25,),
        kwargs={"width": 0.25, "hidden": 8},
        dataset="digits",
        holdout_indices=[1, 5, 9],
        holdout_hash="h",
    )
    base.update(kw)
    return ModelMeta(**base)


@pytest.mark.parametrize(
    "arch,shape",
    [
        ("small_cnn", (1, 8, 8)),
        ("resnet18_cifar", (3, 8, 8)),
        ("preact_resnet18", (3, 8, 8)),
        ("vgg11_bn", (3, 8, 8)),
        ("mlp", (5,)),
    ],
)
def test_every_zoo_model_round_trips(tmp_path, arch, shape) -> None:
    m = meta(
        arch=arch,
        input_shape=shape,
        mean=(0.5,) * shape[0] if len(shape) == 3 else (0.0,) * 5,
        std=(0.25,) * shape[0] if len(shape) == 3 else (1.0,) * 5,
        kwargs={"width": 0.125} if arch != "mlp" else {"hidden": (4,)},
    )
    model = m.build().eval()
    x = torch.rand(2, *shape)
    path = tmp_path / "m.safetensors"
    sha = save_model(path, model, m)
    loaded, lm = load_model(path)
    assert len(sha) == 64
    assert lm == read_meta(path)
    assert lm.holdout_indices == [1, 5, 9]
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x))
    assert arch in list_models()


def test_state_dict_pt_loads_with_meta_and_pickled_module_is_refused(tmp_path) -> None:
    m = meta()
    model = m.build().eval()
    pt = tmp_path / "sd.pt"
    torch.save(model.state_dict(), pt)
    loaded, _ = load_model(pt, meta=m)
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )
    with pytest.raises(ConfigError, match="--arch"):
        load_model(pt)
    whole = tmp_path / "whole.pt"
    torch.save(model, whole)
    with pytest.raises(UnsafeModelError, match="--trust-pickle"):
        load_model(whole, meta=m)
    trusted, _ = load_model(whole, meta=m, trust_pickle=True)
    assert isinstance(trusted, nn.Module)


class _Hostile:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"weight": _Hostile(str(marker))}, fh)
    torch_style = tmp_path / "evil2.pt"
    torch.save({"weight": _Hostile(str(marker))}, torch_style)
    for path in (evil, torch_style):
        with pytest.raises((UnsafeModelError, IncompatibleModelError)):
            load_model(path, meta=meta())
    renamed = tmp_path / "evil.safetensors"
    renamed.write_bytes(evil.read_bytes())
    with pytest.raises(IncompatibleModelError):
        load_model(renamed)
    assert not marker.exists()


def test_corrupt_and_mismatched_files(tmp_path) -> None:
    m = meta()
    path = tmp_path / "m.safetensors"
    save_model(path, m.build(), m)
    data = path.read_bytes()
    trunc = tmp_path / "t.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(IncompatibleModelError):
        load_model(trunc)
    other = meta(num_classes=4)
    wrong = tmp_path / "w.safetensors"
    save_model(wrong, other.build(), m)  # weights of a 4-class model, metadata says 3
    with pytest.raises(IncompatibleModelError, match="does not fit"):
        load_model(wrong)
    nan_model = m.build()
    with torch.no_grad():
        next(nan_model.parameters()).fill_(float("nan"))
    bad = tmp_path / "nan.safetensors"
    save_model(bad, nan_model, m)
    with pytest.raises(IncompatibleModelError, match="NaN"):
        load_model(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")


def test_create_model_errors() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("small_cnn", num_classes=1, input_shape=(1, 8, 8))
    with pytest.raises(ConfigError, match="does not accept"):
        create_model("small_cnn", num_classes=3, input_shape=(1, 8, 8), depth=3)


def test_build_with_a_seed_is_that_seeds_and_leaves_the_callers_stream() -> None:
    m = meta()
    torch.manual_seed(1)
    first = m.build(seed=7).state_dict()
    torch.manual_seed(2)
    stream = torch.get_rng_state()
    again = m.build(seed=7).state_dict()
    assert torch.equal(stream, torch.get_rng_state())
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = m.build(seed=8).state_dict()
    assert not torch.equal(first["features.0.weight"], other["features.0.weight"])
    m.build()  # no seed: the global stream, which it advances
    assert not torch.equal(stream, torch.get_rng_state())
