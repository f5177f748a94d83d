"""Post-training int8 quantization (FX graph mode) and calibration."""

from pruneguard.quantization.calibration import calibrate_, calibration_example
from pruneguard.quantization.ptq import BACKENDS, QUANTIZERS, default_backend, is_quantized, quantize

__all__ = [
    "BACKENDS",
    "QUANTIZERS",
    "calibrate_",
    "calibration_example",
    "default_backend",
    "is_quantized",
    "quantize",
]
