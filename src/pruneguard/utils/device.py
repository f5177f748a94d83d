"""The one place where ``"auto"`` becomes a concrete device, and where the thread count is set."""

from __future__ import annotations

import logging
import os
import re
import statistics
import time

import torch
import torch.nn.functional as F

from pruneguard.errors import ConfigError

__all__ = [
    "resolve_device",
    "check_device_name",
    "DEVICE_ACCEPTED",
    "set_threads",
    "parse_threads",
    "probe_threads",
    "retune_threads",
]

logger = logging.getLogger(__name__)
_AUTO = {"on": False}


DEVICE_ACCEPTED = "auto, cpu, cuda, cuda:N, mps"
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(name: str, *, param: str = "device") -> str:
    """``name`` when it is a device pruneguard accepts (whether or not this machine has it), else ``ConfigError``."""
    if not isinstance(name, str) or not _DEVICE_RE.match(name):
        raise ConfigError(f"{param}={name!r} is not a device; accepted: {DEVICE_ACCEPTED}")
    return name


def resolve_device(name: str = "auto", *, param: str = "device") -> torch.device:
    r"""The device ``name`` stands for on this machine: ``"auto"`` is the first CUDA device, else MPS, else the CPU;
    an explicit name must be one this machine has. Errors are one-line ``ConfigError``\ s naming ``param``.

    Example: ``model.to(resolve_device(cfg.device))``.
    """
    check_device_name(name, param=param)
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if has_mps else torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{param}={name!r}: no CUDA device is available on this machine; accepted: auto, cpu")
        if dev.index is not None and dev.index >= count:
            raise ConfigError(
                f"{param}={name!r}: this machine has {count} CUDA device(s); accepted: cuda:0..{count - 1}"
            )
        return torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())
    if dev.type == "mps" and not has_mps:
        raise ConfigError(f"{param}={name!r}: MPS is not available on this machine; accepted: auto, cpu")
    return dev


def set_threads(threads: int) -> None:
    """Set torch's intra-op thread count (small models on a loaded 2-core machine run best with 1)."""
    if threads < 1:
        raise ConfigError(f"threads={threads} must be >= 1")
    torch.set_num_threads(threads)


def parse_threads(value: str | int) -> int:
    """``--threads``: a count >= 1, or ``auto`` (:func:`probe_threads` decides now)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        _AUTO["on"] = True
        return probe_threads()
    _AUTO["on"] = False
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(f"--threads={value!r} is not accepted; accepted: an integer >= 1, or auto")
    return n


def probe_threads(candidates: tuple[int, ...] | None = None, rounds: int = 5, slack: float = 0.9) -> int:
    """Time a small conv forward/backward at each thread count, interleaved, and return the fastest count.

    More threads must be at least ``1 - slack`` (10%) faster to be chosen. A quiet 2-core machine runs the demo
    model 1.6x faster on 2 threads; with another job on the second core, 2 threads were 1.6-12x slower than 1
    (BENCHMARKS.md, Threads), so this measures the machine as it is now (about 0.2 s) instead of guessing.
    The choice holds for the whole run: load that arrives later is not seen.
    """
    cores = os.cpu_count() or 1
    cands = candidates or tuple(sorted({1, cores}))
    before = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 32, 14, 14, generator=gen)
    w = torch.rand(64, 32, 3, 3, generator=gen, requires_grad=True)
    times: dict[int, list[float]] = {c: [] for c in cands}
    try:
        for r in range(rounds + 1):
            for c in cands if r % 2 == 0 else tuple(reversed(cands)):
                torch.set_num_threads(c)
                t0 = time.perf_counter()
                F.conv2d(x, w, padding=1).square().mean().backward()
                if r:  # round 0 warms up
                    times[c].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    med = {c: statistics.median(v) for c, v in times.items()}
    best = min(cands)
    for c in sorted(cands):
        if med[c] < slack * med[best]:
            best = c
    logger.info("threads auto: %s -> %d", {c: round(t * 1e3, 1) for c, t in med.items()}, best)
    return best


def retune_threads(stage: str) -> int:
    """Before a long stage: with ``--threads auto``, measure again and set the count (the load may have changed
    since start-up, e.g. the disk write-back after an install); otherwise leave it. Returns the count in use."""
    if _AUTO["on"]:
        n = probe_threads()
        if n != torch.get_num_threads():
            logger.info("threads auto: %d for %s", n, stage)
        torch.set_num_threads(n)
    return torch.get_num_threads()
