"""Loading what every workflow needs: the model file, its data, the defender's clean split, triggers."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
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
from pruneguard.models.io import ModelMeta, load_model, read_meta
from pruneguard.utils.io import sha256_file

__all__ = [
    "LoadedModel",
    "describe_model",
    "file_metadata",
    "check_fits",
    "load_for_defense",
    "draw_clean_split",
    "make_trigger",
    "trigger_set",
    "on_device",
]

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


def describe_model(
    description: dict[str, Any] | None,
    *,
    dataset: str | None,
    file_meta: ModelMeta | None = None,
) -> ModelMeta | None:
    """The metadata a model file is loaded with, from the model-description options
    (:class:`pruneguard.config_model.ModelDescriptionConfig`), or ``None`` when they give no ``--arch`` (the
    file's own metadata is then used).

    Unset fields come from the file's metadata when it names the same architecture (its held-out indices and
    provenance are kept), else from ``dataset``. A ``module:factory`` model normalises inside unless ``mean``/``std``
    are given; a zoo model takes them, or the identity with ``normalization_inside``, or the dataset's.
    """
    desc = dict(description or {})
    arch = desc.get("arch")
    if arch is None:
        return None
    base = file_meta if file_meta is not None and file_meta.arch == arch else None
    info = dataset_info(dataset) if dataset is not None else None
    num_classes = desc.get("num_classes") or (base.num_classes if base else info.num_classes if info else None)
    shape = desc.get("input_shape") or (base.input_shape if base else info.input_shape if info else None)
    if num_classes is None or shape is None:
        raise ConfigError(f"--arch={arch} needs --dataset, or --num-classes and --input-shape, to build the model")
    mean, std = desc.get("mean"), desc.get("std")
    if mean is None or std is None:
        if desc.get("normalization_inside") or (":" in arch and base is None):
            mean, std = (0.0,), (1.0,)
        elif base is not None:
            mean, std = base.mean, base.std
        elif info is not None:
            mean, std = info.mean, info.std
        else:
            raise ConfigError(f"--arch={arch} without --dataset needs --mean/--std or --normalization-inside")
    fields: dict[str, Any] = {
        "arch": arch,
        "num_classes": int(num_classes),
        "input_shape": tuple(int(s) for s in shape),
        "mean": tuple(float(m) for m in mean),
        "std": tuple(float(s) for s in std),
        "kwargs": dict(desc.get("arch_kwargs") or (base.kwargs if base else {})),
        "dataset": dataset or (base.dataset if base else None),
    }
    return replace(base, **fields) if base is not None else ModelMeta(**fields)


def file_metadata(model_path: Path) -> ModelMeta | None:
    """The pruneguard metadata of a safetensors file, or ``None`` (no metadata, or not a safetensors file)."""
    return read_meta(model_path) if model_path.suffix == ".safetensors" and model_path.is_file() else None


def load_for_defense(
    model_path: Path,
    *,
    dataset: str | None = None,
    data_dir: Path | None = None,
    meta: ModelMeta | None = None,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    description: dict[str, Any] | None = None,
    trust_pickle: bool = False,
) -> LoadedModel:
    """Load a model file and the dataset it is used with; check that they fit each other.

    ``description`` (or ``arch``/``arch_kwargs``: a zoo name or ``package.module:factory``) describes a file that
    carries no pruneguard metadata (a plain state dict); see :func:`describe_model`.
    """
    if meta is None:
        desc = dict(description or {})
        if arch is not None:
            desc.update(arch=arch, arch_kwargs=dict(arch_kwargs or {}))
        meta = describe_model(desc, dataset=dataset, file_meta=file_metadata(model_path))
    model, meta = load_model(model_path, meta=meta, trust_pickle=trust_pickle)
    name = dataset or meta.dataset
    if name is None:
        raise ConfigError("--dataset is required: the model file does not name the dataset it was trained on")
    info = check_fits(meta, name)
    train, test = load_dataset(name, "train", data_dir), load_dataset(name, "test", data_dir)
    return LoadedModel(model, meta, sha256_file(model_path), name, info, train, test)


def check_fits(meta: ModelMeta, dataset: str) -> DatasetInfo:
    """The dataset's description, after checking the model takes its inputs and predicts its classes."""
    info = dataset_info(dataset)
    if tuple(meta.input_shape) != tuple(info.input_shape):
        raise IncompatibleModelError(
            f"--model expects inputs of shape {tuple(meta.input_shape)} but --dataset={dataset} gives "
            f"{tuple(info.input_shape)}; use the dataset the model was trained on"
        )
    if meta.num_classes != info.num_classes:
        raise IncompatibleModelError(
            f"--model has {meta.num_classes} classes but --dataset={dataset} has {info.num_classes}"
        )
    return info


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
    if name not in backdoor_names():
        raise ConfigError(f"eval_attack={name!r} is not a backdoor attack; accepted: {', '.join(backdoor_names())}")
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
    if not 0 <= attack.target_label < meta.num_classes:
        raise ConfigError(f"target_label={attack.target_label} is outside [0, {meta.num_classes - 1}]")
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


def on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` when its parameters are on ``device`` already, else a copy moved there: the caller's model stays
    where it is (a job's input model is never modified, its placement included)."""
    p = next(model.parameters(), None)
    if p is None or p.device == device:
        return model
    return copy.deepcopy(model).to(device)
