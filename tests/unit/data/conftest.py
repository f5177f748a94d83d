"""Synthetic dataset files for the data tests: tiny IDX (.gz) sets and CIFAR-10 python batches."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pruneguard.data.idx import write_idx

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _write_idx_dataset(
    folder: Path, *, n_train: int = 12, n_test: int = 6, gz: bool = True, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write MNIST-style IDX files (28x28 uint8 images, labels cycling 0..9) and return the arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        img_name, lab_name = IDX_NAMES[split]
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{img_name}{suffix}", images)
        write_idx(folder / f"{lab_name}{suffix}", labels)
        out[split] = (images, labels)
    return out


def _cifar_batch_bytes(n: int, *, seed: int = 0, protocol: int = 2) -> tuple[bytes, np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch (bytes keys, as the official py2 pickles) and its data and labels."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    batch = {b"batch_label": b"synthetic", b"data": data, b"labels": labels}
    return pickle.dumps(batch, protocol=protocol), data, np.asarray(labels, dtype=np.int64)


def _write_cifar_folder(
    folder: Path, *, n_per_batch: int = 4, train_batches: int = 5
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write ``data_batch_1..k`` and ``test_batch`` into ``folder``; return the expected train/test arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = [], []
    for i in range(1, train_batches + 1):
        raw, data, labels = _cifar_batch_bytes(n_per_batch, seed=i)
        (folder / f"data_batch_{i}").write_bytes(raw)
        train_x.append(data)
        train_y.append(labels)
    raw, data, labels = _cifar_batch_bytes(n_per_batch, seed=100)
    (folder / "test_batch").write_bytes(raw)
    return {
        "train": (np.concatenate(train_x).reshape(-1, 3, 32, 32), np.concatenate(train_y)),
        "test": (data.reshape(-1, 3, 32, 32), labels),
    }


@pytest.fixture
def make_idx_dataset() -> Callable[..., dict[str, tuple[np.ndarray, np.ndarray]]]:
    return _write_idx_dataset


@pytest.fixture
def cifar_batch_bytes() -> Callable[..., tuple[bytes, np.ndarray, np.ndarray]]:
    return _cifar_batch_bytes


@pytest.fixture
def make_cifar_folder() -> Callable[..., dict[str, tuple[np.ndarray, np.ndarray]]]:
    return _write_cifar_folder


@pytest.fixture
def isolated_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No PRUNEGUARD_DATA, a fresh HOME (so no user cache) and no system Fashion-MNIST folder."""
    import pruneguard.data.datasets as datasets

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PRUNEGUARD_DATA", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_FMNIST_DIR", tmp_path / "no-system-dir")
    return home
