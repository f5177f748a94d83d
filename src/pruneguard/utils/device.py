"""The one place where ``"auto"`` becomes a concrete device, and where the thread count is set."""

from __future__ import annotations

import logging
import os
import statistics
import time

import torch
import torch.nn.functional as F

from pruneguard.errors import ConfigError

__all__ = ["resolve_device", "set_threads", "parse_threads", "probe_threads", "retune_threads"]

logger = logging.getLogger(__name__)
_AUTO = {"on": False}


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
