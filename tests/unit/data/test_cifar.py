"""CIFAR-10 python batches: loading through load_dataset, and refusal of hostile pickles."""

from __future__ import annotations

import os
import pickle
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from pruneguard.data import load_dataset
from pruneguard.data.cifar import read_cifar_batch
from pruneguard.errors import ConfigError


class _Hostile:
    """Runs a shell command when unpickled by an unrestricted unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (f"echo pwned > {shlex.quote(str(self.marker))}",)


def _hostile_batch(marker: Path) -> bytes:
    return pickle.dumps({b"data": _Hostile(marker), b"labels": [0]}, protocol=2)


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("nested", [False, True])
def test_load_cifar10_from_data_dir(tmp_path: Path, make_cifar_folder, split: str, nested: bool) -> None:
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    expected_x, expected_y = make_cifar_folder(folder, n_per_batch=4)[split]
    data = load_dataset("cifar10", split, data_dir=tmp_path)
    n = 20 if split == "train" else 4
    assert data.x.shape == (n, 3, 32, 32)
    assert data.x.dtype == torch.uint8
    assert data.y.dtype == torch.int64
    assert data.num_classes == 10
    assert data.classes[0] == "airplane"
    np.testing.assert_array_equal(data.x.numpy(), expected_x)
    np.testing.assert_array_equal(data.y.numpy(), expected_y)


def test_channel_layout_is_planar_rgb(tmp_path: Path) -> None:
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.full(1024, 30)]).astype(np.uint8)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": row[None], b"labels": [7]}, protocol=2))
    data = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert data.x[0, :, 5, 5].tolist() == [10, 20, 30]
    assert data.y.tolist() == [7]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batches_written_with_any_pickle_protocol_load(tmp_path: Path, cifar_batch_bytes, protocol: int) -> None:
    raw, data, labels = cifar_batch_bytes(3, protocol=protocol)
    (tmp_path / "batch").write_bytes(raw)
    x, y = read_cifar_batch(tmp_path / "batch")
    np.testing.assert_array_equal(x.reshape(3, -1), data)
    np.testing.assert_array_equal(y, labels)


def test_str_keys_are_accepted(tmp_path: Path) -> None:
    batch = {"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [1, 2]}
    (tmp_path / "batch").write_bytes(pickle.dumps(batch))
    x, y = read_cifar_batch(tmp_path / "batch")
    assert x.shape == (2, 3, 32, 32)
    assert y.tolist() == [1, 2]


def test_hostile_test_batch_is_refused_without_side_effect(tmp_path: Path, make_cifar_folder) -> None:
    make_cifar_folder(tmp_path, n_per_batch=2)
    marker = tmp_path / "pwned.txt"
    (tmp_path / "test_batch").write_bytes(_hostile_batch(marker))
    with pytest.raises(ConfigError, match="refused to load"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert not marker.exists()


def test_hostile_payload_is_real(tmp_path: Path) -> None:
    """Control: the same payload does run under plain pickle, so the refusal above is meaningful."""
    marker = tmp_path / "control.txt"
    pickle.loads(_hostile_batch(marker))
    assert marker.read_text().strip() == "pwned"


def test_hostile_train_batch_is_refused(tmp_path: Path, make_cifar_folder) -> None:
    make_cifar_folder(tmp_path, n_per_batch=2)
    marker = tmp_path / "pwned.txt"
    (tmp_path / "data_batch_3").write_bytes(_hostile_batch(marker))
    with pytest.raises(ConfigError, match="data_batch_3"):
        load_dataset("cifar10", "train", data_dir=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ([1, 2, 3], "not a dict"),
        ({b"data": np.zeros((2, 3072), dtype=np.uint8)}, "lacks"),
        ({b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}, "shape"),
        ({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0]}, "shape"),
        ({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": 5}, "shape"),
        ({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": {"a": 1}}, "non-numeric|shape"),
    ],
)
def test_malformed_batches_raise_config_error(tmp_path: Path, batch: object, match: str) -> None:
    (tmp_path / "batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ConfigError, match=match):
        read_cifar_batch(tmp_path / "batch")


def test_not_a_pickle_raises_config_error(tmp_path: Path) -> None:
    (tmp_path / "batch").write_bytes(b"\x00\x01 definitely not a pickle")
    with pytest.raises(ConfigError, match="could not be read"):
        read_cifar_batch(tmp_path / "batch")


def test_missing_folder_lists_searched_dirs(tmp_path: Path, isolated_data_env: Path) -> None:
    with pytest.raises(ConfigError, match="cifar-10-batches-py not found") as info:
        load_dataset("cifar10", "test", data_dir=tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value)
    assert str(isolated_data_env / ".cache" / "pruneguard" / "cifar10") in str(info.value)
