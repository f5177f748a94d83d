"""Loading what every workflow needs: the model file, its data, the defender's clean split, triggers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pruneguard.attacks.backdoor.poison import triggered_eval_set
from pruneguard.attacks.base import ATTACKS
from pruneguard.data.datasets import DatasetInfo, dataset_info, load_dataset
from pruneguard.data.splits import clean_split, indices_hash
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.models.io import ModelMeta, load_model
from pruneguard.utils.io import sha256_file

__all__ = ["LoadedModel", "load_for_defense", "draw_clean_split", "make_trigger", "trigger_set"]

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: nn.Module
    meta: ModelMeta
    sha256: str
    dataset: str
    info: DatasetInfo
    train: ArrayData
    test: ArrayData


def load_for_defense(
    model_path: Path,
    *,
    dataset: str | None = None,
    data_dir: Path | None = None,
    meta: ModelMeta | None = None,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    trust_pickle: bool = False,
) -> LoadedModel:
    """Load a model file and the dataset it is used with; check that they fit each other.

    ``arch`` (a zoo name or ``package.module:factory``) describes a file that carries no pruneguard metadata
    (a plain state dict): the model is built for ``dataset``'s classes, input shape and normalisation.
    """
    if arch is not None and meta is None:
        if dataset is None:
            raise ConfigError(f"--arch={arch} needs --dataset to know the classes and input shape")
        info = dataset_info(dataset)
        meta = ModelMeta(
            arch=arch,
            num_classes=info.num_classes,
            input_shape=info.input_shape,
            mean=info.mean,
            std=info.std,
            kwargs=dict(arch_kwargs or {}),
            dataset=dataset,
        )
    model, meta = load_model(model_path, meta=meta, trust_pickle=trust_pickle)
    name = dataset or meta.dataset
    if name is None:
        raise ConfigError("--dataset is required: the model file does not name the dataset it was trained on")
    info = dataset_info(name)
    if tuple(meta.input_shape) != tuple(info.input_shape):
        raise IncompatibleModelError(
            f"--model expects inputs of shape {tuple(meta.input_shape)} but --dataset={name} gives "
            f"{tuple(info.input_shape)}; use the dataset the model was trained on"
        )
    if meta.num_classes != info.num_classes:
        raise IncompatibleModelError(
            f"--model has {meta.num_classes} classes but --dataset={name} has {info.num_classes}"
        )
    train, test = load_dataset(name, "train", data_dir), load_dataset(name, "test", data_dir)
    return LoadedModel(model, meta, sha256_file(model_path), name, info, train, test)


def draw_clean_split(
    loaded: LoadedModel,
    *,
    clean_fraction: float | None,
    clean_samples: int | None,
    seed: int,
) -> tuple[ArrayData, dict[str, Any]]:
    """The defender's clean split, from the model's held-out indices when its file records them."""
    y = loaded.train.y
    if loaded.meta.holdout_indices:
        pool = torch.tensor(loaded.meta.holdout_indices, dtype=torch.long)
        if int(pool.max()) >= y.numel():
            raise IncompatibleModelError("the model's held-out indices do not fit this dataset's training split")
        source = "held-out part of the training split (recorded in the model file)"
    else:
        pool = torch.arange(y.numel())
        source = "training split (the model file records no held-out indices: it may overlap its training data)"
        logger.warning("model file has no held-out indices; drawing the clean split from the whole training split")
    gen = torch.Generator().manual_seed(seed)
    idx = clean_split(
        y, pool, clean_fraction=clean_fraction, clean_samples=clean_samples, total=y.numel(), generator=gen
    )
    clean = loaded.train.subset(idx, name=f"{loaded.dataset}:clean")
    if torch.unique(clean.y).numel() < 2:
        raise ConfigError(f"the clean split has a single class ({int(clean.y[0])}); it needs at least two classes")
    return clean, {
        "clean_samples": len(clean),
        "clean_indices_hash": indices_hash(idx),
        "clean_source": source,
    }


def make_trigger(name: str, meta: ModelMeta, target_label: int | None, model_path: Path | None = None) -> Any:
    """Build the evaluation trigger ``name``; parameters recorded in the model file (by ``train``) are reused,
    and a learned trigger generator saved beside the model (input-aware attack) is loaded and hash-checked."""
    recorded = meta.extra.get("attack") or {}
    params: dict[str, Any] = dict(recorded.get("params", {})) if recorded.get("name") == name else {}
    if target_label is not None:
        params["target_label"] = target_label
    net_info = recorded.get("trigger_net") if recorded.get("name") == name else None
    if net_info and model_path is not None:
        params["trigger_net"] = _load_trigger_net(model_path.parent / net_info["file"], net_info)
    try:
        attack = ATTACKS.create(name, **params)
    except (TypeError, ConfigError) as exc:  # the recorded parameters come from an untrusted model file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IncompatibleModelError(
            f"the {name} parameters recorded in the model file are not accepted: {first}"
        ) from None
    if not hasattr(attack, "poison"):
        raise ConfigError(f"--eval-attack={name!r} is not a backdoor attack; accepted: {', '.join(backdoor_names())}")
    if not 0 <= attack.target_label < meta.num_classes:
        raise ConfigError(f"--target-label={attack.target_label} is outside [0, {meta.num_classes - 1}]")
    return attack


def _load_trigger_net(path: Path, info: dict[str, Any]) -> Any:
    from safetensors.torch import load_file

    from pruneguard.attacks.backdoor.input_aware import InputAwareGenerator

    if not path.is_file() or sha256_file(path) != info.get("sha256"):
        raise ConfigError(f"the trigger generator {path} recorded with the model is missing or does not match its hash")
    net = InputAwareGenerator(int(info["channels"]), int(info["hidden"]))
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def backdoor_names() -> list[str]:
    return [n for n in ATTACKS.names() if ATTACKS.meta(n).get("kind") == "backdoor"]


def trigger_set(attack: Any, test: ArrayData) -> ArrayData:
    return triggered_eval_set(test, lambda x, y: attack(None, x, y), attack.target_label)
