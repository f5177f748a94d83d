"""ONNX export of a pruneguard model, checked against PyTorch with onnxruntime before it is written.

Exporter: PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``). It is deprecated in
favour of the ``torch.export`` path, but that path cannot trace the FX-quantized int8 models, needs
``onnxscript`` and takes seconds more per small model; the TorchScript exporter handles float models (dense,
masked, channel-pruned, zeroed neurons) and the static int8 models (``quantized::conv2d``/``linear`` become
``QLinearConv``/``QLinearMatMul``). The batch dimension is dynamic. Inputs are float images or features in [0, 1]
(the model normalises them itself, as every pruneguard model does); outputs are the logits.

The file gets the model's pruneguard metadata and the check's figures as ONNX ``metadata_props``.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pruneguard.errors import ConfigError
from pruneguard.pruning.base import make_permanent_
from pruneguard.utils.io import atomic_write

__all__ = ["OnnxCheck", "onnx_bytes", "check_onnx", "checked_onnx", "export_onnx", "onnx_available", "OPSET"]

logger = logging.getLogger(__name__)
OPSET = 17


@dataclass(frozen=True)
class OnnxCheck:
    """onnxruntime against PyTorch on one batch: ``max_abs_diff`` of the logits, the share of rows whose argmax
    agrees (``argmax_agreement``, in [0, 1]) and the batch size ``n``."""

    max_abs_diff: float
    argmax_agreement: float
    n: int
    inputs: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def onnx_available() -> str | None:
    """``None`` when onnx and onnxruntime import, else why not (one line)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"{exc.name or 'onnx'} is not installed (pip install onnx onnxruntime)"
    return None


def _exportable(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """An eval copy on ``device`` with pruning masks baked into the weights (hooks and parametrisations do not
    export)."""
    work = copy.deepcopy(model).to(device).eval()
    make_permanent_(work)
    return work


def onnx_bytes(model: nn.Module, example: Tensor, *, opset: int = OPSET) -> bytes:
    """``model`` (not modified) as an ONNX file in memory; ``example`` is one float batch ``(N, ...)`` of inputs."""
    reason = onnx_available()
    if reason is not None:
        raise ConfigError(f"--format=onnx needs onnx and onnxruntime: {reason}")
    work = _exportable(model)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings, nothing about the model
        torch.onnx.export(
            work,
            (example.to("cpu").float(),),
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
            dynamo=False,
            opset_version=opset,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        )
    return buf.getvalue()


def check_onnx(blob: bytes, model: nn.Module, x: Tensor, *, inputs: str, batch_size: int = 256) -> OnnxCheck:
    """Run the ONNX model ``blob`` with onnxruntime (CPU) and ``model`` with PyTorch on ``x`` (float, [0, 1]), the
    latter on the device of ``model``'s parameters: the check compares the file with the model as it runs there."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    work = _exportable(model, device)
    diffs, agree = [], 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to("cpu").float()
            ref = work(xb.to(device)).float().cpu()
            got = torch.from_numpy(session.run(None, {"x": xb.numpy()})[0]).float()
            diffs.append(float((ref - got).abs().max()))
            agree += int((ref.argmax(1) == got.argmax(1)).sum())
    return OnnxCheck(max(diffs), agree / len(x), len(x), inputs)


def checked_onnx(
    model: nn.Module,
    x: Tensor,
    *,
    inputs: str,
    metadata: dict[str, str] | None = None,
    opset: int = OPSET,
) -> tuple[bytes, OnnxCheck]:
    """``model`` as ONNX bytes, checked on the batch ``x`` (``inputs`` says where it came from), with
    ``metadata`` and the check (``pruneguard.onnx_check``, JSON) in the file's ``metadata_props``."""
    import onnx

    if len(x) == 0:
        raise ConfigError("the ONNX check needs at least one input row")
    blob = onnx_bytes(model, x[: min(len(x), 2)], opset=opset)
    check = check_onnx(blob, model, x, inputs=inputs)
    proto = onnx.load_from_string(blob)
    props = {**(metadata or {}), "pruneguard.onnx_check": json.dumps(check.to_dict(), sort_keys=True)}
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    logger.info(
        "ONNX: max |logit diff| %.2e, argmax agreement %.4f on %d rows",
        check.max_abs_diff,
        check.argmax_agreement,
        len(x),
    )
    return proto.SerializeToString(), check


def export_onnx(
    path: str | os.PathLike[str],
    model: nn.Module,
    x: Tensor,
    *,
    inputs: str,
    metadata: dict[str, str] | None = None,
    opset: int = OPSET,
) -> OnnxCheck:
    """Export ``model`` to ``path`` (atomically), checked on the batch ``x`` first; return the check.

    See :func:`checked_onnx` for ``inputs`` and ``metadata``.
    """
    blob, check = checked_onnx(model, x, inputs=inputs, metadata=metadata, opset=opset)
    with atomic_write(path, "wb") as fh:
        fh.write(blob)
    return check
