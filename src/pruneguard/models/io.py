"""Model files: safetensors weights with pruneguard's JSON metadata in the safetensors header.

A model file alone rebuilds the model (arch, kwargs, classes, input shape, normalisation). Loading never
unpickles arbitrary objects: safetensors has no code path, a ``.pt``/``.pth`` state dict is read with
``torch.load(weights_only=True)``, and a pickled whole module is refused unless ``trust_pickle=True``.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from pruneguard.errors import ConfigError, IncompatibleModelError, PruneGuardError, UnsafeModelError
from pruneguard.models.registry import create_model
from pruneguard.utils.io import atomic_write, sha256_file

__all__ = ["ModelMeta", "save_model", "load_model", "read_meta", "cpu_state_dict", "FORMAT"]

FORMAT = "pruneguard-model/1"


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to rebuild and use a model, stored in the model file.

    ``holdout_indices`` are training-split indices the model was *not* trained on: the defender's clean data
    is drawn from them. ``extra`` holds provenance (source hash, attack used to train it, report hash, ...).
    """

    arch: str
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    holdout_indices: list[int] | None = None
    holdout_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IncompatibleModelError(f"model metadata is not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or raw.pop("format", None) != FORMAT:
            raise IncompatibleModelError(f"model metadata is not of format {FORMAT!r}")
        try:
            meta = cls(**raw)
            meta = replace(
                meta,
                input_shape=tuple(int(s) for s in meta.input_shape),
                mean=tuple(float(v) for v in meta.mean),
                std=tuple(float(v) for v in meta.std),
            )
        except (TypeError, ValueError) as exc:
            raise IncompatibleModelError(f"model metadata has wrong or missing fields: {exc}") from None
        if not isinstance(meta.num_classes, int) or meta.num_classes < 2:
            raise IncompatibleModelError(f"model metadata num_classes={meta.num_classes!r} must be an int >= 2")
        if not meta.input_shape or any(s <= 0 for s in meta.input_shape):
            raise IncompatibleModelError(f"model metadata input_shape={meta.input_shape} is not a valid shape")
        if not all(math.isfinite(v) for v in meta.mean) or not all(math.isfinite(v) and v > 0 for v in meta.std):
            raise IncompatibleModelError(
                f"model metadata mean={list(meta.mean)} std={list(meta.std)} is not accepted; accepted: finite "
                "means and finite positive standard deviations"
            )
        _check_field_types(meta)
        return meta

    def build(self, seed: int | None = None) -> nn.Module:
        """The architecture, freshly initialised: from ``seed`` when given (the caller's random stream is left as
        it was), else from the global random state (weights about to be loaded)."""
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self.build()
        return create_model(
            self.arch,
            num_classes=self.num_classes,
            input_shape=self.input_shape,
            mean=self.mean,
            std=self.std,
            **self.kwargs,
        )


def _check_field_types(meta: ModelMeta) -> None:
    """Metadata comes from an untrusted file: every field must have the type the rest of pruneguard expects."""
    indices = meta.holdout_indices
    checks = [
        ("arch", isinstance(meta.arch, str) and bool(meta.arch), "a non-empty string"),
        ("kwargs", isinstance(meta.kwargs, dict) and all(isinstance(k, str) for k in meta.kwargs), "a mapping"),
        ("dataset", meta.dataset is None or isinstance(meta.dataset, str), "a string or null"),
        (
            "holdout_indices",
            indices is None or (isinstance(indices, list) and all(type(i) is int and i >= 0 for i in indices)),
            "a list of non-negative integers or null",
        ),
        ("holdout_hash", meta.holdout_hash is None or isinstance(meta.holdout_hash, str), "a string or null"),
        ("extra", isinstance(meta.extra, dict), "a mapping"),
    ]
    for name, ok, accepted in checks:
        if not ok:
            value = repr(getattr(meta, name))
            value = value if len(value) <= 60 else value[:57] + "..."
            raise IncompatibleModelError(f"model metadata {name}={value} is not accepted; accepted: {accepted}")


def cpu_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s state dict as detached, contiguous CPU tensors (what safetensors and ``torch.save`` write)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def save_model(path: str | os.PathLike[str], model: nn.Module, meta: ModelMeta) -> str:
    """Write ``model``'s state dict and ``meta`` atomically as one safetensors file; return its SHA-256."""
    blob = save(cpu_state_dict(model), metadata={"pruneguard": meta.to_json()})
    with atomic_write(path, "wb") as fh:
        fh.write(blob)
    return sha256_file(path)


def _safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise IncompatibleModelError(f"model file {path} is truncated (no safetensors header)")
        n = int.from_bytes(head, "little")
        if n <= 0 or n > 100_000_000:
            raise IncompatibleModelError(f"model file {path} is not a safetensors file (header size {n})")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise IncompatibleModelError(f"model file {path} has a corrupt safetensors header") from None
    if not isinstance(header, dict):
        raise IncompatibleModelError(f"model file {path} has a corrupt safetensors header")
    return header


def read_meta(path: str | os.PathLike[str]) -> ModelMeta | None:
    """The pruneguard metadata of a safetensors model file, or ``None`` when it has none."""
    header = _safetensors_header(Path(path))
    text = (header.get("__metadata__") or {}).get("pruneguard")
    return ModelMeta.from_json(text) if text else None


def _is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors"


def _load_state(path: Path, trust_pickle: bool) -> dict[str, torch.Tensor] | nn.Module:
    if _is_safetensors(path):
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise IncompatibleModelError(f"model file {path} is corrupt: {exc}") from None
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the refusal below is the message
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            raise UnsafeModelError(
                f"model file {path} contains pickled Python objects, which can run code when loaded; refused. "
                "Convert it to safetensors, or pass --trust-pickle if you trust its source"
            ) from exc
        obj = torch.load(path, map_location="cpu", weights_only=False)  # the user vouched for this file
    except Exception as exc:  # any failure to read a weights-only file means it is not a model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IncompatibleModelError(f"model file {path} is corrupt or not a model: {first}") from None
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise IncompatibleModelError(f"model file {path} does not hold a state dict of tensors")
    return obj


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise IncompatibleModelError(f"model file {path}: tensor {name!r} holds NaN or Inf values")


def _build(meta: ModelMeta, path: Path) -> nn.Module:
    try:
        return meta.build()
    except PruneGuardError:
        raise
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IncompatibleModelError(f"model file {path}: its metadata does not build a model: {first}") from None


def _check_shapes(meta: ModelMeta, state: dict[str, torch.Tensor], path: Path) -> None:
    """Build the model on the meta device (no memory) and compare it with the file before anything is allocated:
    the same tensor names, shapes and parameter count, and floating-point tensors where the model has them."""
    with torch.device("meta"):
        probe = _build(meta, path)
    expected = probe.state_dict()
    missing = sorted(set(expected) - set(state))
    count_model = sum(t.numel() for t in expected.values())
    if missing:
        raise IncompatibleModelError(
            f"model file {path} does not fit arch {meta.arch!r}: its metadata describes {count_model} values but "
            f"the file lacks {len(missing)} of the tensors (first: {missing[0]})"
        )
    for name, t in expected.items():
        if tuple(state[name].shape) != tuple(t.shape):
            raise IncompatibleModelError(
                f"model file {path} does not fit arch {meta.arch!r}: {name} has shape {tuple(state[name].shape)} "
                f"in the file but {tuple(t.shape)} in the model its metadata describes"
            )
        if t.is_floating_point() and not state[name].is_floating_point():
            raise IncompatibleModelError(
                f"model file {path}: tensor {name!r} has dtype {str(state[name].dtype).removeprefix('torch.')}; "
                "accepted: a floating-point tensor (weights are never cast silently)"
            )


def _check_outputs(model: nn.Module, meta: ModelMeta, path: Path) -> None:
    """One forward pass on mid-grey inputs: finite weights can still give NaN (a BatchNorm variance below 0,
    weights of 1e38); such a model would otherwise look perfectly robust to every attack."""
    x = torch.full((2, *meta.input_shape), 0.5)
    try:
        with torch.no_grad():
            logits = model.eval()(x)
    except Exception as exc:  # the weights fit the architecture, so a failure here means the file is broken
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IncompatibleModelError(f"model file {path}: the model cannot run its own input shape: {first}") from None
    if isinstance(logits, torch.Tensor) and not bool(torch.isfinite(logits).all()):
        raise IncompatibleModelError(
            f"model file {path}: the model outputs NaN or Inf on a plain input; its weights or buffers are broken "
            "(e.g. a negative BatchNorm variance or overflowing weights)"
        )


def load_model(
    path: str | os.PathLike[str],
    *,
    meta: ModelMeta | None = None,
    trust_pickle: bool = False,
) -> tuple[nn.Module, ModelMeta]:
    """Load a model file; ``meta`` (e.g. from ``--arch``) is required when the file carries none.

    Returns the model in eval mode on CPU and the metadata used to build it.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--model={path} does not exist or is not a file")
    file_meta = read_meta(path) if _is_safetensors(path) else None
    meta = meta or file_meta
    loaded = _load_state(path, trust_pickle)
    if isinstance(loaded, nn.Module):
        if meta is None:
            raise ConfigError(f"--model={path} is a pickled module; give --arch/--dataset to describe its inputs")
        return loaded.eval(), meta
    if meta is None:
        raise ConfigError(f"--model={path} carries no pruneguard metadata; pass --arch (and --dataset) to build it")
    _check_finite(loaded, path)
    if file_meta is not None and meta is file_meta and ":" in meta.arch and not trust_pickle:
        raise UnsafeModelError(
            f"model file {path} names the user architecture {meta.arch!r}, which would import and run code; "
            "refused. Pass --trust-pickle if you trust its source"
        )
    _check_shapes(meta, loaded, path)  # before allocating anything the metadata asks for
    model = _build(meta, path)
    try:
        model.load_state_dict(loaded, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "mismatch"
        raise IncompatibleModelError(f"model file {path} does not fit arch {meta.arch!r}: {first}") from None
    _check_outputs(model, meta, path)
    return model.eval(), meta
