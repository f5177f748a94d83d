"""The export job: a model file (dense, masked, ANP-purified, channel-pruned) -> an ONNX file, checked with
onnxruntime against PyTorch on test images of its dataset (or seeded uniform inputs when none is known)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from pruneguard.config import RunConfig
from pruneguard.config_model import ModelDescriptionConfig
from pruneguard.data.datasets import load_dataset
from pruneguard.data.tensors import to_float
from pruneguard.export.onnx import OPSET, OnnxCheck, export_onnx
from pruneguard.models.io import ModelMeta
from pruneguard.reports.provenance import git_commit, now_iso, versions
from pruneguard.utils.device import resolve_device
from pruneguard.utils.io import sha256_file
from pruneguard.workflows.attack import eval_sample, load_hardened
from pruneguard.workflows.common import check_fits, describe_model, file_metadata, on_device

__all__ = ["ExportRunConfig", "export_job", "check_inputs", "onnx_metadata", "EXPORT_SCHEMA"]

logger = logging.getLogger(__name__)
EXPORT_SCHEMA = "pruneguard.export/1"


class ExportRunConfig(RunConfig, ModelDescriptionConfig):
    """``pruneguard export``: ``model`` -> ``out`` in ``format``, checked on ``n_check`` inputs."""

    model: Path
    out: Path
    format: Literal["onnx"] = "onnx"
    dataset: str | None = None
    data_dir: Path | None = None
    n_check: int = Field(256, ge=1, le=100_000)
    opset: int = Field(OPSET, ge=13, le=21)
    seed: int = Field(0, ge=-(2**63), lt=2**64)
    trust_pickle: bool = False

    @model_validator(mode="after")
    def _checks(self) -> ExportRunConfig:
        if self.out.expanduser().resolve() == self.model.expanduser().resolve():
            raise ValueError(f"--out={self.out} is the input model; choose another file (inputs are never overwritten)")
        if self.out.suffix != ".onnx":
            raise ValueError(f"--out={self.out}: accepted: a file name ending in .onnx")
        return self


def check_inputs(
    meta: ModelMeta, *, dataset: str | None, data_dir: Path | None, n: int, seed: int
) -> tuple[Tensor, str]:
    """The batch the export is checked on: ``n`` test rows of the model's dataset (stratified, seeded), or
    ``n`` seeded uniform [0, 1] inputs of the model's input shape when no dataset is named."""
    name = dataset or meta.dataset
    if name is not None and not name.startswith("csv:"):
        check_fits(meta, name)
        test = eval_sample(load_dataset(name, "test", data_dir), n, seed)
        return to_float(test.x).float(), f"{len(test)} test rows of {name} (stratified, seed {seed})"
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *meta.input_shape), generator=gen)
    return x, f"{n} uniform random inputs in [0, 1] (seed {seed}; no registered dataset named)"


def onnx_metadata(meta: ModelMeta, source_sha256: str) -> dict[str, str]:
    """What the ONNX file carries besides the graph: the pruneguard metadata and the source file's hash."""
    return {"pruneguard.model": meta.to_json(), "pruneguard.source_sha256": source_sha256}


def export_job(cfg: ExportRunConfig) -> dict[str, Any]:
    """Export ``cfg.model`` to ``cfg.out``; return the JSON-ready record (also embedded in the file)."""
    started, t0 = now_iso(), time.perf_counter()
    meta = describe_model(cfg.description(), dataset=cfg.dataset, file_meta=file_metadata(cfg.model))
    model, meta = load_hardened(cfg.model, meta=meta, trust_pickle=cfg.trust_pickle)
    model = on_device(model, resolve_device(cfg.device))  # the reference logits of the check are computed there
    x, inputs = check_inputs(meta, dataset=cfg.dataset, data_dir=cfg.data_dir, n=cfg.n_check, seed=cfg.seed)
    sha = sha256_file(cfg.model)
    check: OnnxCheck = export_onnx(cfg.out, model, x, inputs=inputs, metadata=onnx_metadata(meta, sha), opset=cfg.opset)
    return {
        "schema": EXPORT_SCHEMA,
        "model": str(cfg.model),
        "model_sha256": sha,
        "out": str(cfg.out),
        "out_sha256": sha256_file(cfg.out),
        "format": cfg.format,
        "opset": cfg.opset,
        "check": asdict(check),
        "structured": bool(meta.extra.get("structured")),
        "meta": json.loads(meta.to_json()),
        "config": cfg.to_dict(),
        "versions": versions(),
        "git_commit": git_commit(),
        "device": str(next(model.parameters()).device),
        "seconds": time.perf_counter() - t0,
        "started": started,
        "finished": now_iso(),
    }
