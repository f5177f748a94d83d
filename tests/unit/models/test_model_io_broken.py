"""Model files that are broken but look fine: refused before anything is built, NaN-producing weights, integer
weights, a metadata normalisation of 0, and a plain pickle refused with one line (no torch warning)."""

from __future__ import annotations

import contextlib
import io
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import pruneguard.models.io as model_io
from pruneguard.cli.app import main
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import IncompatibleModelError
from pruneguard.evaluation.predict import evaluate_accuracy
from pruneguard.evaluation.robustness import correct_mask
from pruneguard.models.io import ModelMeta, load_model, save_model

META = ModelMeta(arch="mlp", num_classes=2, input_shape=(4,), mean=(0.0,), std=(1.0,), kwargs={"hidden": [8]})


def _file(tmp_path: Path, meta: ModelMeta = META, edit=None) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    save_model(path, META.build(), META)
    if edit is not None or meta is not META:
        state = load_file(str(path))
        if edit is not None:
            edit(state)
        save_file(state, str(path), metadata={"pruneguard": meta.to_json()})
    return path


def test_metadata_asking_for_more_than_the_file_holds_is_refused_before_building(tmp_path: Path, monkeypatch) -> None:
    big = ModelMeta(**{**META.__dict__, "kwargs": {"hidden": [8, 4000, 4000]}})
    path = _file(tmp_path, big)
    devices: list[str] = []
    real = model_io.create_model

    def recording(*args, **kwargs):
        devices.append(torch.empty(0).device.type)  # the device models are built on right now
        return real(*args, **kwargs)

    monkeypatch.setattr(model_io, "create_model", recording)
    with pytest.raises(IncompatibleModelError, match="lacks .* of the tensors"):
        load_model(path)
    assert devices == ["meta"]  # only the memory-free probe was built


def _set(*names: str, value: float):
    def edit(state: dict[str, torch.Tensor]) -> None:
        for name in names:
            state[name] = torch.full_like(state[name], value)

    return edit


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_set("net.2.running_var", value=-1.0), "NaN or Inf"),
        (_set("net.1.weight", "net.4.weight", value=1e38), "NaN or Inf"),
        (lambda s: s.__setitem__("net.1.weight", s["net.1.weight"].to(torch.int32)), "dtype int32"),
        (lambda s: s.__setitem__("net.1.weight", s["net.1.weight"] > 0), "dtype bool"),
    ],
)
def test_broken_weights_are_refused_at_load(tmp_path: Path, edit, needle: str) -> None:
    with pytest.raises(IncompatibleModelError, match=needle):
        load_model(_file(tmp_path, edit=edit))


def test_zero_std_in_metadata_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IncompatibleModelError, match="std"):
        load_model(_file(tmp_path, ModelMeta(**{**META.__dict__, "std": (0.0,)})))


def test_nan_logits_stop_every_evaluation() -> None:
    class NaNOnNegative(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * torch.sqrt(x[:, :1])  # NaN where the first feature is negative

    x = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    with pytest.raises(IncompatibleModelError, match="1 of 2 inputs"):
        evaluate_accuracy(NaNOnNegative(), ArrayData(x, torch.tensor([0, 1]), 2))
    with pytest.raises(IncompatibleModelError, match="NaN or Inf"):
        correct_mask(NaNOnNegative(), x, torch.tensor([0, 1]))


def test_broken_model_exits_2_in_the_cli(tmp_path: Path) -> None:
    path = _file(tmp_path, edit=_set("net.2.running_var", value=-1.0))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["attack", "--model", str(path), "--dataset", "breast_cancer", "--out", str(tmp_path / "o")])
    assert code == 2 and err.getvalue().count("\n") == 1 and "NaN or Inf" in err.getvalue()
    assert not (tmp_path / "o").exists()


def test_plain_pickle_refusal_is_the_only_line(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(pickle.dumps({"w": 1.5}, protocol=4))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["attack", "--model", str(path), "--out", str(tmp_path / "o")])
    assert code == 2, err.getvalue()
    assert err.getvalue().count("\n") == 1 and "pickled Python objects" in err.getvalue(), err.getvalue()
