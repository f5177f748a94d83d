"""The one place where ``"auto"`` becomes a concrete device, and where the thread count is set."""

from __future__ import annotations

import torch

from pruneguard.errors import ConfigError

__all__ = ["resolve_device", "set_threads"]


def resolve_device(name: str = "auto") -> torch.device:
    """Resolve ``"auto"`` to the best available accelerator, else CPU; validate explicit names."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device(torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a device; accepted: auto, cpu, cuda[:N], mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} was asked for but no CUDA device is available; use auto or cpu")
    return dev


def set_threads(threads: int) -> None:
    """Set torch's intra-op thread count (small models on a loaded 2-core machine run best with 1)."""
    if threads < 1:
        raise ConfigError(f"threads={threads} must be >= 1")
    torch.set_num_threads(threads)
