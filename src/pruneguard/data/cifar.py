"""CIFAR-10 from the standard python-pickle batches, read with a restricted unpickler (no code execution)."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from pruneguard.errors import ConfigError

__all__ = ["read_cifar10_folder", "read_cifar_batch"]

# Only what numpy arrays, dicts, lists and bytes need. Anything else (os.system, eval, ...) is refused.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy.core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: CIFAR batches hold only arrays")


def read_cifar_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: ``(N, 3, 32, 32)`` uint8 images and ``(N,)`` int64 labels."""
    try:
        raw = Path(path).read_bytes()
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ConfigError(f"CIFAR batch {path} could not be read: {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"CIFAR batch {path} is not a dict")
    get = lambda key: obj.get(key.encode(), obj.get(key))  # noqa: E731 - keys are bytes (py2) or str
    data, labels = get("data"), get("labels")
    if data is None or labels is None:
        raise ConfigError(f"CIFAR batch {path} lacks 'data' or 'labels'")
    try:
        data, labels = np.asarray(data, dtype=np.uint8), np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"CIFAR batch {path} holds non-numeric data or labels: {exc}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise ConfigError(f"CIFAR batch {path} has data of shape {data.shape}; expected (N, 3072)")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10_folder(folder: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    parts = [read_cifar_batch(Path(folder) / n) for n in names if (Path(folder) / n).is_file()]
    if not parts:
        raise ConfigError(f"no CIFAR-10 {split} batches in {folder}")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
