"""``train_job`` is a function of its config: the same config gives the same weights in any process."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from pruneguard.config import TrainRunConfig
from pruneguard.workflows.train import MODEL_NAME, train_job


def _weights(out: Path, seed: int) -> dict[str, torch.Tensor]:
    train_job(TrainRunConfig(out=out, dataset="digits", arch="small_cnn", epochs=1, seed=seed))
    return load_file(out / MODEL_NAME)


def test_the_same_config_gives_the_same_weights_whatever_the_global_rng(tmp_path: Path) -> None:
    torch.manual_seed(1)
    first = _weights(tmp_path / "a", 0)
    torch.manual_seed(2)  # another caller state (a fresh process starts from a random one)
    again = _weights(tmp_path / "b", 0)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    other = _weights(tmp_path / "c", 1)
    assert not torch.equal(first["classifier.4.weight"], other["classifier.4.weight"])
    state = torch.get_rng_state()
    _weights(tmp_path / "d", 0)
    assert torch.equal(state, torch.get_rng_state())  # and the caller's random stream is left as it was
