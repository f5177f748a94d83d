"""Keep freed tensor memory for reuse on glibc, instead of returning it to the OS after every pass.

By default glibc serves blocks above a (dynamic, at most 32 MiB) threshold with ``mmap`` and gives them back with
``munmap`` when freed, and trims the heap top once more than twice that is free. A training or ANP loop frees
and re-allocates the same activation-sized blocks every iteration, so every iteration page-faults its memory in
again: on this project's 2-core machine that was 15-25% of a small CNN's step (system time in ``make demo``:
1 min 53 s of 11 min). Intel's PyTorch CPU tuning guide gives the same diagnosis and swaps in jemalloc or
tcmalloc with ``LD_PRELOAD``; :func:`tune_allocator` gets most of that from glibc itself with two ``mallopt``
calls, no preload and no new dependency. The cost: the process keeps its peak heap until it exits.

``PRUNEGUARD_MALLOC=default`` turns it off (the CLI and the benchmarks call it at start-up).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

from pruneguard.errors import ConfigError

__all__ = ["tune_allocator", "MALLOC_ENV"]

logger = logging.getLogger(__name__)

MALLOC_ENV = "PRUNEGUARD_MALLOC"
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30  # blocks under 1 GiB come from the heap ...
_TRIM_THRESHOLD = 1 << 31  # ... and up to 2 GiB of free heap top is kept
_state: dict[str, bool] = {}


def tune_allocator(mode: str | None = None) -> bool:
    """Apply the heap settings once per process; returns whether they are in effect.

    ``mode`` is ``"tuned"`` or ``"default"``; ``None`` reads ``$PRUNEGUARD_MALLOC`` (default ``"tuned"``).
    A no-op returning ``False`` where the C library is not glibc.
    """
    mode = (os.environ.get(MALLOC_ENV) or "tuned") if mode is None else mode
    if mode not in ("tuned", "default"):
        raise ConfigError(f"{MALLOC_ENV}={mode!r} is not accepted; accepted: tuned, default")
    if mode == "default":
        return _state.get("tuned", False)
    if "tuned" in _state:
        return _state["tuned"]
    _state["tuned"] = _apply()
    return _state["tuned"]


def _apply() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (present on glibc only; musl has no mallopt thresholds)
    except (OSError, AttributeError):
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    logger.debug("glibc heap settings %s", "applied" if ok else "refused")
    return ok
