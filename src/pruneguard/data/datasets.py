"""Dataset registry and loaders: Fashion-MNIST / MNIST (IDX), CIFAR-10 (python batches), digits, breast cancer.

Images come back as uint8 ``(N, C, H, W)`` tensors (0..255); normalisation lives inside the model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pruneguard.data.cifar import read_cifar10_folder
from pruneguard.data.idx import read_idx
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.registry import Registry

__all__ = ["DATASETS", "DatasetInfo", "load_dataset", "list_datasets", "dataset_info", "search_dirs"]

SYSTEM_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_SPLITS = ("train", "test")


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What a model needs to know about a dataset: classes, input shape and normalisation statistics."""

    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    kind: str = "image"


Loader = Callable[[str, "str | os.PathLike[str] | None"], ArrayData]
DATASETS: Registry[Loader] = Registry("dataset")
_INFO: dict[str, DatasetInfo] = {}


def _register(name: str, info: DatasetInfo) -> Callable[[Loader], Loader]:
    _INFO[name] = info

    def deco(fn: Loader) -> Loader:
        return DATASETS.register(name)(fn)

    return deco


def search_dirs(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for ``name``, in order: ``data_dir``, ``$PRUNEGUARD_DATA``, the user cache, system dirs."""
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [Path(data_dir), Path(data_dir) / name]
    env = os.environ.get("PRUNEGUARD_DATA")
    if env:
        dirs += [Path(env) / name, Path(env)]
    dirs.append(Path.home() / ".cache" / "pruneguard" / name)
    if name == "fashion_mnist":
        dirs.append(SYSTEM_FMNIST_DIR)
    return dirs


def _find_idx(name: str, split: str, data_dir: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    prefix = "train" if split == "train" else "t10k"
    for d in search_dirs(name, data_dir):
        for suffix in (".gz", ""):
            img, lab = d / f"{prefix}-images-idx3-ubyte{suffix}", d / f"{prefix}-labels-idx1-ubyte{suffix}"
            if img.is_file() and lab.is_file():
                return img, lab
    tried = ", ".join(str(d) for d in search_dirs(name, data_dir))
    raise ConfigError(
        f"dataset={name!r}: IDX files for split {split!r} not found; searched {tried}. "
        f"Pass --data-dir, set PRUNEGUARD_DATA, or run `pruneguard download {name}`"
    )


def _idx_loader(name: str) -> Loader:
    def load(split: str, data_dir: str | os.PathLike[str] | None = None) -> ArrayData:
        img_path, lab_path = _find_idx(name, split, data_dir)
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ConfigError(f"dataset={name!r}: {img_path} and {lab_path} do not form an image/label pair")
        x = torch.from_numpy(images.copy()).unsqueeze(1)
        y = torch.from_numpy(labels.astype(np.int64))
        info = _INFO[name]
        return ArrayData(x, y, info.num_classes, f"{name}:{split}", info.classes)

    return load


_FMNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_register("fashion_mnist", DatasetInfo(10, (1, 28, 28), (0.2860,), (0.3530,), _FMNIST_CLASSES))(
    _idx_loader("fashion_mnist")
)
_register("mnist", DatasetInfo(10, (1, 28, 28), (0.1307,), (0.3081,), tuple(str(i) for i in range(10))))(
    _idx_loader("mnist")
)

_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@_register(
    "cifar10",
    DatasetInfo(10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), _CIFAR_CLASSES),
)
def _load_cifar10(split: str, data_dir: str | os.PathLike[str] | None = None) -> ArrayData:
    for d in search_dirs("cifar10", data_dir):
        for folder in (d, d / "cifar-10-batches-py"):
            if (folder / "test_batch").is_file():
                x, y = read_cifar10_folder(folder, split)
                return ArrayData(torch.from_numpy(x), torch.from_numpy(y), 10, f"cifar10:{split}", _CIFAR_CLASSES)
    tried = ", ".join(str(d) for d in search_dirs("cifar10", data_dir))
    raise ConfigError(f"dataset='cifar10': cifar-10-batches-py not found; searched {tried}")


def _fixed_split(n: int, y: np.ndarray, split: str, test_fraction: float = 0.2) -> np.ndarray:
    """A fixed stratified train/test split for datasets that ship without one (seed 0, never changes)."""
    rng = np.random.default_rng(0)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.append(idx[: int(round(len(idx) * test_fraction))])
    test_idx = np.sort(np.concatenate(test))
    return test_idx if split == "test" else np.setdiff1d(np.arange(n), test_idx)


@_register("digits", DatasetInfo(10, (1, 8, 8), (0.3,), (0.4,), tuple(str(i) for i in range(10))))
def _load_digits(split: str, data_dir: str | os.PathLike[str] | None = None) -> ArrayData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    y = bunch.target.astype(np.int64)
    idx = _fixed_split(len(y), y, split)
    return ArrayData(
        torch.from_numpy(images[idx]).unsqueeze(1),
        torch.from_numpy(y[idx]),
        10,
        f"digits:{split}",
        _INFO["digits"].classes,
    )


@_register("breast_cancer", DatasetInfo(2, (30,), (0.0,), (1.0,), ("malignant", "benign"), kind="tabular"))
def _load_breast_cancer(split: str, data_dir: str | os.PathLike[str] | None = None) -> ArrayData:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = bunch.data.astype(np.float32)
    y = bunch.target.astype(np.int64)
    idx = _fixed_split(len(y), y, split)
    return ArrayData(
        torch.from_numpy(x[idx]),
        torch.from_numpy(y[idx]),
        2,
        f"breast_cancer:{split}",
        ("malignant", "benign"),
    )


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike[str] | None = None) -> ArrayData:
    """Load split ``"train"`` or ``"test"`` of a registered dataset.

    Example:
        >>> train = load_dataset("fashion_mnist", "train")   # uint8 (60000, 1, 28, 28)
    """
    if split not in _SPLITS:
        raise ConfigError(f"split={split!r} is not a split; accepted: {', '.join(_SPLITS)}")
    return DATASETS.get(name)(split, data_dir)


def dataset_info(name: str) -> DatasetInfo:
    DATASETS.get(name)
    return _INFO[name]


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.names(pattern)
