"""Dataset registry: IDX datasets from data_dir / PRUNEGUARD_DATA, bundled sklearn sets, bad names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pruneguard.data import dataset_info, list_datasets, load_dataset, search_dirs
from pruneguard.errors import ConfigError, UnknownNameError


def _check_idx_data(data, expected: tuple[np.ndarray, np.ndarray], name: str, split: str) -> None:
    images, labels = expected
    assert data.x.shape == (len(labels), 1, 28, 28)
    assert data.x.dtype == torch.uint8
    assert data.y.dtype == torch.int64
    assert data.num_classes == 10
    assert data.name == f"{name}:{split}"
    np.testing.assert_array_equal(data.x[:, 0].numpy(), images)
    np.testing.assert_array_equal(data.y.numpy(), labels.astype(np.int64))


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_from_data_dir(tmp_path: Path, make_idx_dataset, isolated_data_env, split: str) -> None:
    arrays = make_idx_dataset(tmp_path / "fm", n_train=12, n_test=6)
    data = load_dataset("fashion_mnist", split, data_dir=tmp_path / "fm")
    _check_idx_data(data, arrays[split], "fashion_mnist", split)
    assert data.classes[0] == "T-shirt/top" and len(data.classes) == 10


def test_data_dir_may_hold_a_folder_per_dataset(tmp_path: Path, make_idx_dataset, isolated_data_env) -> None:
    arrays = make_idx_dataset(tmp_path / "mnist", n_train=10, n_test=5)
    data = load_dataset("mnist", "test", data_dir=tmp_path)
    _check_idx_data(data, arrays["test"], "mnist", "test")


def test_uncompressed_idx_files_are_found(tmp_path: Path, make_idx_dataset, isolated_data_env) -> None:
    arrays = make_idx_dataset(tmp_path, n_train=10, n_test=5, gz=False)
    data = load_dataset("mnist", "train", data_dir=tmp_path)
    _check_idx_data(data, arrays["train"], "mnist", "train")


@pytest.mark.parametrize("nested", [True, False])
def test_fashion_mnist_from_env_var(
    tmp_path: Path, make_idx_dataset, isolated_data_env, monkeypatch, nested: bool
) -> None:
    root = tmp_path / "datasets"
    arrays = make_idx_dataset(root / "fashion_mnist" if nested else root, n_train=8, n_test=4, seed=3)
    monkeypatch.setenv("PRUNEGUARD_DATA", str(root))
    data = load_dataset("fashion_mnist", "train")
    _check_idx_data(data, arrays["train"], "fashion_mnist", "train")


def test_data_dir_wins_over_env_var(tmp_path: Path, make_idx_dataset, isolated_data_env, monkeypatch) -> None:
    make_idx_dataset(tmp_path / "env", n_train=8, n_test=4, seed=1)
    mine = make_idx_dataset(tmp_path / "mine", n_train=10, n_test=4, seed=2)
    monkeypatch.setenv("PRUNEGUARD_DATA", str(tmp_path / "env"))
    data = load_dataset("mnist", "train", data_dir=tmp_path / "mine")
    _check_idx_data(data, mine["train"], "mnist", "train")


def test_search_dirs_order(tmp_path: Path, isolated_data_env, monkeypatch) -> None:
    monkeypatch.setenv("PRUNEGUARD_DATA", str(tmp_path / "env"))
    dirs = search_dirs("mnist", tmp_path / "given")
    assert dirs == [
        tmp_path / "given",
        tmp_path / "given" / "mnist",
        tmp_path / "env" / "mnist",
        tmp_path / "env",
        isolated_data_env / ".cache" / "pruneguard" / "mnist",
    ]


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_missing_files_list_the_searched_dirs(tmp_path: Path, isolated_data_env, monkeypatch, name: str) -> None:
    monkeypatch.setenv("PRUNEGUARD_DATA", str(tmp_path / "env"))
    with pytest.raises(ConfigError) as info:
        load_dataset(name, "train", data_dir=tmp_path / "given")
    message = str(info.value)
    assert "not found" in message
    for d in search_dirs(name, tmp_path / "given"):
        assert str(d) in message


def test_only_images_without_labels_is_missing(tmp_path: Path, make_idx_dataset, isolated_data_env) -> None:
    make_idx_dataset(tmp_path, n_train=4, n_test=2)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ConfigError, match="not found"):
        load_dataset("mnist", "train", data_dir=tmp_path)


def test_image_label_count_mismatch(tmp_path: Path, make_idx_dataset, isolated_data_env) -> None:
    from pruneguard.data.idx import write_idx

    make_idx_dataset(tmp_path, n_train=6, n_test=2)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(ConfigError, match="image/label pair"):
        load_dataset("mnist", "train", data_dir=tmp_path)


def _expected_test_size(y: np.ndarray, fraction: float = 0.2) -> int:
    return sum(int(round(c * fraction)) for c in np.bincount(y))


def test_digits_shapes_and_fixed_split() -> None:
    from sklearn.datasets import load_digits

    y_all = load_digits().target
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) + len(test) == len(y_all) == 1797
    assert len(test) == _expected_test_size(y_all)
    assert train.x.shape == (len(train), 1, 8, 8) and test.x.shape == (len(test), 1, 8, 8)
    assert train.x.dtype == torch.uint8 and int(train.x.max()) == 255
    assert train.num_classes == 10
    # stratified: each class keeps ~20% in test
    np.testing.assert_allclose(np.bincount(test.y.numpy(), minlength=10) / np.bincount(y_all), 0.2, atol=0.02)
    again = load_dataset("digits", "test")
    assert torch.equal(again.x, test.x) and torch.equal(again.y, test.y)


def test_breast_cancer_shapes_and_fixed_split() -> None:
    from sklearn.datasets import load_breast_cancer

    y_all = load_breast_cancer().target
    train, test = load_dataset("breast_cancer", "train"), load_dataset("breast_cancer", "test")
    assert len(train) + len(test) == len(y_all) == 569
    assert len(test) == _expected_test_size(y_all)
    assert train.x.shape == (len(train), 30) and train.x.dtype == torch.float32
    assert test.num_classes == 2 and set(test.y.tolist()) == {0, 1}
    assert dataset_info("breast_cancer").kind == "tabular"
    again = load_dataset("breast_cancer", "train")
    assert torch.equal(again.x, train.x)
    # train and test rows are different samples
    train_rows = {tuple(r) for r in train.x.numpy().round(6).tolist()}
    assert not any(tuple(r) in train_rows for r in test.x.numpy().round(6).tolist())


def test_unknown_dataset_name_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match="fashion_mnist"):
        load_dataset("fashion_mnst", "train")
    with pytest.raises(KeyError):  # UnknownNameError is also a KeyError
        dataset_info("imagenet_22k")


def test_unknown_split_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="split='val'"):
        load_dataset("digits", "val")


def test_registry_lists_and_describes_datasets() -> None:
    assert {"fashion_mnist", "mnist", "cifar10", "digits", "breast_cancer"} <= set(list_datasets())
    assert list_datasets("*mnist") == ["fashion_mnist", "mnist"]
    info = dataset_info("cifar10")
    assert info.input_shape == (3, 32, 32) and len(info.mean) == len(info.std) == 3
