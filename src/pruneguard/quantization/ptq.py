"""Post-training int8 quantization for CPU inference.

Choice of toolkit: ``torch.ao.quantization``'s FX graph mode (``prepare_fx`` / ``convert_fx``). It is
deprecated but still shipped and working in torch 2.13, and it is the only option here that

- quantizes *unmodified* models: FX tracing inserts the quantize/dequantize boundaries itself, so no
  ``QuantStub``/``DeQuantStub`` or ``FloatFunctional`` edits of the zoo (eager mode would need them for the
  residual adds of the ResNets), and conv-BN(-ReLU) / linear-BN fusion comes for free;
- runs real int8 kernels in eager PyTorch (``quantized::conv2d``/``linear`` through fbgemm/x86/onednn or
  qnnpack packed weights), so ``int8`` latency can be measured without ``torch.compile``;
- needs no extra dependency. The PT2E path was moved out of torch (``torch.ao.quantization.quantize_pt2e`` is
  gone in 2.13) into ``torchao``, which is not a dependency, and its q/dq graphs only become int8 kernels
  after ``torch.compile`` with Inductor (a C++ toolchain at run time).

The :class:`~pruneguard.models.Normalize` first layer is kept in float (a non-traceable leaf); its output is
quantized, so the quantized model still takes float inputs in [0, 1] and returns float logits.

Coverage: ``static_int8`` works for every zoo model (small_cnn, mlp, resnet18_cifar, preact_resnet18,
vgg11_bn) and any model FX can trace symbolically (no data-dependent control flow). ``dynamic_int8`` quantizes
only ``nn.Linear`` layers (weights int8, activations quantized on the fly); it needs no calibration and any
model works, but conv layers stay float. The result is CPU-only.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.models.layers import Normalize
from pruneguard.pruning.base import is_masked, make_permanent_
from pruneguard.quantization.calibration import calibrate_, calibration_example
from pruneguard.registry import Registry

__all__ = ["QUANTIZERS", "BACKENDS", "quantize", "default_backend", "is_quantized"]

logger = logging.getLogger(__name__)

BACKENDS = ("x86", "fbgemm", "onednn", "qnnpack")
Quantizer = Callable[..., nn.Module]
QUANTIZERS: Registry[Quantizer] = Registry("quantizer")
_NOISY = (
    "torch.ao.quantization is deprecated",
    "Please use quant_min and quant_max",
    "must run observer before",
    "quantized tensor creation functions",
)


def default_backend() -> str:
    """The current quantized engine when it is a CPU int8 backend, else the first supported one."""
    current = torch.backends.quantized.engine
    if current in BACKENDS:
        return current
    supported = torch.backends.quantized.supported_engines
    for b in BACKENDS:
        if b in supported:
            return b
    raise IncompatibleModelError(f"this torch build has no int8 CPU backend (engines: {supported})")


@contextlib.contextmanager
def _quiet_engine(backend: str) -> Iterator[None]:
    """Use ``backend`` for weight packing and silence torch.ao's deprecation chatter; restore both after."""
    old = torch.backends.quantized.engine
    with warnings.catch_warnings():
        for msg in _NOISY:
            warnings.filterwarnings("ignore", message=f".*{msg}")
        try:
            if backend != old:
                torch.backends.quantized.engine = backend
            yield
        finally:
            if torch.backends.quantized.engine != old:
                torch.backends.quantized.engine = old


def _float_copy(model: nn.Module) -> nn.Module:
    work = copy.deepcopy(model).to("cpu").float().eval()
    if any(is_masked(m) for m in work.modules()):
        make_permanent_(work)  # FX would otherwise see weight_orig/weight_mask
    for p in work.parameters():
        p.requires_grad_(False)
    return work


@QUANTIZERS.register("static_int8")
def _static_int8(
    model: nn.Module,
    calibration: ArrayData | None,
    backend: str,
    *,
    batch_size: int = 64,
    max_samples: int | None = 1024,
) -> nn.Module:
    if calibration is None:
        raise ConfigError(
            "method='static_int8' needs calibration data (the defender's clean split); "
            "pass calibration=..., or use method='dynamic_int8'"
        )
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    example = calibration_example(calibration)
    custom = PrepareCustomConfig().set_non_traceable_module_classes([Normalize])
    try:
        observed = prepare_fx(
            _float_copy(model), get_default_qconfig_mapping(backend), (example,), prepare_custom_config=custom
        )
    except Exception as exc:  # symbolic tracing of a foreign model can fail in many ways
        raise IncompatibleModelError(
            f"FX could not trace the model for static int8 quantization "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "try method='dynamic_int8'"
        ) from None
    n = calibrate_(observed, calibration, batch_size=batch_size, max_samples=max_samples)
    logger.info("calibrated static int8 (%s) on %d samples", backend, n)
    return convert_fx(observed).eval()


@QUANTIZERS.register("dynamic_int8")
def _dynamic_int8(model: nn.Module, calibration: ArrayData | None, backend: str, **_: object) -> nn.Module:
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(_float_copy(model), {nn.Linear}, dtype=torch.qint8).eval()


def quantize(
    model: nn.Module,
    method: str = "static_int8",
    calibration: ArrayData | None = None,
    *,
    backend: str | None = None,
    batch_size: int = 64,
    max_samples: int | None = 1024,
) -> nn.Module:
    """A NEW int8 CPU model from ``model`` (never mutated; pruning masks are baked into the copy).

    Args:
        model: a float model (any device); zoo models start with ``Normalize``.
        method: ``"static_int8"`` (weights and activations int8, calibrated) or ``"dynamic_int8"``
            (``nn.Linear`` only, activations quantized per batch at run time).
        calibration: the defender's clean data, required for ``static_int8``; the first ``max_samples`` rows
            are used, in order.
        backend: ``"x86"``, ``"fbgemm"``, ``"onednn"`` or ``"qnnpack"`` (default: the current engine). It
            fixes the weight packing and the qconfig; the global engine is restored afterwards.

    Returns:
        An eval-mode CPU module taking float inputs ``(N, ...)`` in [0, 1] and returning float logits.

    Example:
        >>> qmodel = quantize(model, "static_int8", calibration=clean)
        >>> logits = qmodel(x)
    """
    quantizer = QUANTIZERS.get(method)
    backend = default_backend() if backend is None else backend
    if backend not in BACKENDS or backend not in torch.backends.quantized.supported_engines:
        supported = [b for b in BACKENDS if b in torch.backends.quantized.supported_engines]
        raise ConfigError(f"backend={backend!r} is not accepted; accepted here: {', '.join(supported)}")
    if calibration is not None and not isinstance(calibration, ArrayData):
        raise TypeError(f"calibration must be ArrayData or None, got {type(calibration).__name__}")
    with _quiet_engine(backend):
        return quantizer(model, calibration, backend, batch_size=batch_size, max_samples=max_samples)


def is_quantized(model: nn.Module) -> bool:
    """Whether ``model`` contains int8 quantized modules (static or dynamic)."""
    prefixes = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")
    return any(type(m).__module__.startswith(prefixes) for m in model.modules())
