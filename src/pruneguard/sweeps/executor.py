"""Run a sweep's units in this process or as Ray tasks, each result cached under the hash of its config.

A *unit* is one independent piece of a sweep (a model to train; one defence on one model with its settings):
a function that returns a JSON-ready dict, the config its result depends on, and the CPUs and GPUs it needs.
Its result is written atomically to ``path`` (by convention ``<folder>/<name>-<hash of config>.json``) as soon
as it arrives, so a rerun or a resumed sweep computes only the units whose file is missing, and a unit that
fails (after its retries) is reported once every other unit has finished and been kept.

``executor="local"`` runs the units one after the other in this process. ``executor="ray"`` submits each as a
Ray task declaring ``num_cpus``/``num_gpus``: without an ``address`` a local Ray is started in this process on
this machine's cores (and stopped at the end); with one (``"auto"``, ``"HOST:6379"``) the sweep joins that
cluster. Results travel back to this process, which writes the cache; the units' own files (trained models,
ANP states) are written where they run, so on several machines ``--cache`` must be a folder every node sees
at the same path (as must the code). Ray is imported only for ``executor="ray"``.

Example::

    units = [Unit(f"row-{i}", {"i": i}, square, (i,), path=result_path(cache, f"row-{i}", {"i": i}))
             for i in range(4)]
    results = run_units(units, executor="ray")      # [{"value": 0}, {"value": 1}, ...]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pruneguard.errors import ConfigError, PruneGuardError
from pruneguard.utils.io import atomic_write_json, json_default

__all__ = [
    "Unit",
    "SweepError",
    "SweepStats",
    "config_hash",
    "result_path",
    "run_units",
    "EXECUTORS",
]

logger = logging.getLogger(__name__)
EXECUTORS = ("local", "ray")
DEFAULT_RETRIES = 2


def config_hash(config: Any) -> str:
    """16 hex digits of the SHA-256 of ``config`` as canonical JSON (sorted keys; paths and the like as text)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def result_path(folder: str | os.PathLike[str], name: str, config: Any) -> Path:
    """Where the result of the unit ``name`` with ``config`` is kept: ``folder/<name>-<config_hash>.json``."""
    return Path(folder) / f"{name}-{config_hash(config)}.json"


@dataclass(frozen=True)
class Unit:
    """One unit of a sweep: ``fn(*args)`` returns a JSON-ready dict, kept at ``path``.

    ``fn`` must be picklable for Ray (a module-level function); ``num_cpus`` is also the torch thread count the
    unit runs with; ``num_gpus`` is what Ray reserves for it (it then sees only that GPU). ``reuse`` says whether
    a kept result counts as done (default: any kept result does).
    """

    name: str
    config: Any
    fn: Callable[..., dict[str, Any]]
    args: tuple[Any, ...] = ()
    path: Path | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    reuse: Callable[[dict[str, Any]], bool] | None = field(default=None, compare=False)

    def cached(self) -> dict[str, Any] | None:
        """The kept result, when there is one that counts as done."""
        if self.path is None or not self.path.is_file():
            return None
        row: dict[str, Any] = json.loads(self.path.read_text())
        return row if self.reuse is None or self.reuse(row) else None


class SweepError(PruneGuardError):
    """Units failed after their retries; every other unit finished and its result was kept."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        self.failures = failures
        names = ", ".join(f"{name} ({error})" for name, error in failures)
        super().__init__(f"{len(failures)} unit(s) failed after their retries: {names}; rerun to retry only those")


@dataclass
class SweepStats:
    """What one :func:`run_units` call did: units computed (names), reused from the cache, and its seconds."""

    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _call(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...], threads: int) -> dict[str, Any]:
    """A unit as it runs (in this process or a Ray worker): with its declared CPUs as torch threads."""
    import torch

    from pruneguard.utils.allocator import tune_allocator

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    tune_allocator()
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


def _threads(unit: Unit) -> int:
    return max(1, int(unit.num_cpus))


def run_units(
    units: Sequence[Unit],
    *,
    executor: Literal["local", "ray"] = "local",
    address: str | None = None,
    retries: int = DEFAULT_RETRIES,
    stats: SweepStats | None = None,
    ray_init: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The result of every unit, in order: kept ones read back, the others computed and kept as they finish.

    Units with the same ``path`` run once. ``retries`` is how many times a failed unit is run again (Ray: also
    when its worker process dies). ``ray_init`` adds keyword arguments to ``ray.init`` for a local Ray (e.g.
    ``num_cpus``, ``_temp_dir``). Raises :class:`SweepError` naming the units that still failed.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not accepted; accepted: {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise ConfigError(f"address={address!r} needs executor='ray'")
    if retries < 0:
        raise ConfigError(f"retries={retries} is not accepted; accepted: an integer >= 0")
    stats = stats if stats is not None else SweepStats()
    t0 = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    todo: dict[Any, list[int]] = {}  # one run per path (or per unit without one)
    for i, unit in enumerate(units):
        kept = unit.cached()
        if kept is not None:
            results[i] = kept
            stats.reused.append(unit.name)
        else:
            todo.setdefault(unit.path if unit.path is not None else ("unit", i), []).append(i)
    runs = [(units[idx[0]], idx) for idx in todo.values()]
    failures: list[tuple[str, str]] = []

    def finished(unit: Unit, indices: list[int], result: dict[str, Any]) -> None:
        if unit.path is not None:
            atomic_write_json(unit.path, result)
        result = json.loads(json.dumps(result, default=json_default))  # as a rerun reads it back from the cache
        for i in indices:
            results[i] = result
        stats.computed.append(unit.name)

    if runs:
        run = _run_ray if executor == "ray" else _run_local
        run(runs, finished, failures, retries=retries, address=address, ray_init=ray_init or {})
    stats.seconds += time.perf_counter() - t0
    if failures:
        raise SweepError(failures)
    return [results[i] for i in range(len(units))]


_Finished = Callable[[Unit, list[int], dict[str, Any]], None]


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"


def _run_local(
    runs: list[tuple[Unit, list[int]]], finished: _Finished, failures: list[tuple[str, str]], *, retries: int, **_: Any
) -> None:
    for unit, indices in runs:
        for attempt in range(retries + 1):
            try:
                result = _call(unit.fn, unit.args, _threads(unit))
            except Exception as exc:  # a unit's failure is reported with the sweep's, after the other units
                logger.warning("%s failed (attempt %d of %d): %s", unit.name, attempt + 1, retries + 1, _error(exc))
                if attempt == retries:
                    failures.append((unit.name, _error(exc)))
                continue
            finished(unit, indices, result)
            break


def _worker_path() -> str:
    """This process's import path for the Ray workers, so that they import the sweep's modules as it does."""
    entries = [p for p in sys.path if p and Path(p).is_dir()]
    return os.pathsep.join(dict.fromkeys(entries))


def _run_ray(
    runs: list[tuple[Unit, list[int]]],
    finished: _Finished,
    failures: list[tuple[str, str]],
    *,
    retries: int,
    address: str | None,
    ray_init: dict[str, Any],
) -> None:
    import ray

    started = not ray.is_initialized()
    if started:
        env = {"env_vars": {"PYTHONPATH": _worker_path()}}
        if address is not None:
            ray.init(address=address, runtime_env=env, logging_level=logging.WARNING)
        else:
            options = {"num_cpus": os.cpu_count() or 1, "include_dashboard": False, **ray_init}
            ray.init(runtime_env=env, logging_level=logging.WARNING, **options)
    try:
        task = ray.remote(_call)
        pending = {}
        for unit, indices in runs:
            ref = task.options(
                num_cpus=unit.num_cpus,
                num_gpus=unit.num_gpus,
                max_retries=retries,
                retry_exceptions=True,
                name=unit.name,
            ).remote(unit.fn, unit.args, _threads(unit))
            pending[ref] = (unit, indices)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            unit, indices = pending.pop(done[0])
            try:
                result = ray.get(done[0])
            except Exception as exc:  # RayTaskError (the unit raised) or a worker that died, retries spent
                logger.warning("%s failed after %d retries: %s", unit.name, retries, _error(exc))
                failures.append((unit.name, _error(exc)))
                continue
            finished(unit, indices, result)
    finally:
        if started:
            ray.shutdown()
