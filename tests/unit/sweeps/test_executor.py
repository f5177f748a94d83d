"""The sweep executor: results kept by the hash of their config, reused on a rerun, a failed unit retried or
reported without losing the others; Ray gives the local results (tests marked ``slow`` start a local Ray)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pruneguard.errors import ConfigError
from pruneguard.sweeps import SweepError, SweepStats, Unit, config_hash, result_path, run_units


def square(i: int) -> dict[str, Any]:
    return {"i": i, "square": i * i, "pid": os.getpid()}


def fails_once(marker: str, i: int) -> dict[str, Any]:
    """Raises on its first run (it leaves ``marker`` behind), succeeds on the next."""
    if not Path(marker).exists():
        Path(marker).touch()
        raise RuntimeError("first attempt")
    return square(i)


def dies_once(marker: str, i: int) -> dict[str, Any]:
    """Kills its own process on the first run (a worker lost midway), succeeds on the next."""
    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(9)
    return square(i)


def broken(i: int) -> dict[str, Any]:
    raise ValueError(f"unit {i} cannot run")


def _units(folder: Path, n: int, fn: Any = square) -> list[Unit]:
    return [Unit(f"u{i}", {"i": i}, fn, (i,), path=result_path(folder, f"u{i}", {"i": i})) for i in range(n)]


def _values(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(r["i"], r["square"]) for r in rows]


def test_results_are_kept_by_config_and_reused(tmp_path: Path) -> None:
    first = SweepStats()
    rows = run_units(_units(tmp_path, 3), stats=first)
    assert _values(rows) == [(0, 0), (1, 1), (2, 4)] and first.computed == ["u0", "u1", "u2"]
    assert result_path(tmp_path, "u1", {"i": 1}) == tmp_path / f"u1-{config_hash({'i': 1})}.json"
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1}) != config_hash({"a": 1, "b": 3})
    again = SweepStats()
    assert run_units(_units(tmp_path, 4), stats=again) == [*rows, square(3) | {"pid": os.getpid()}]
    assert again.computed == ["u3"] and again.reused == ["u0", "u1", "u2"]
    twice = [*_units(tmp_path, 1), *_units(tmp_path, 1)]  # the same path: computed once
    (tmp_path / f"u0-{config_hash({'i': 0})}.json").unlink()
    once = SweepStats()
    assert len(run_units(twice, stats=once)) == 2 and once.computed == ["u0"]


def test_a_failed_unit_is_retried_then_reported_after_the_others(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker")
    unit = Unit("flaky", {"k": 1}, fails_once, (marker, 5), path=tmp_path / "flaky.json")
    assert run_units([unit], retries=1)[0]["square"] == 25
    units = [*_units(tmp_path / "rows", 2), Unit("bad", {"k": 2}, broken, (7,), path=tmp_path / "bad.json")]
    with pytest.raises(SweepError, match="bad .ValueError: unit 7 cannot run") as err:
        run_units(units, retries=1)
    assert err.value.failures == [("bad", "ValueError: unit 7 cannot run")]
    assert len(list((tmp_path / "rows").glob("*.json"))) == 2 and not (tmp_path / "bad.json").exists()
    fixed = SweepStats()
    run_units([*units[:2], Unit("bad", {"k": 2}, square, (7,), path=tmp_path / "bad.json")], stats=fixed)
    assert fixed.computed == ["bad"]


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^executor='dask'.*accepted: local, ray"):
        run_units(_units(tmp_path, 1), executor="dask")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="^address='auto' needs executor='ray'"):
        run_units(_units(tmp_path, 1), address="auto")


@pytest.fixture(scope="module")
def ray_options() -> Iterator[dict[str, Any]]:
    """A local Ray for this module: 2 CPUs, no dashboard, its files in a short temporary folder."""
    pytest.importorskip("ray")
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    yield {"num_cpus": 2, "_temp_dir": folder}
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one local Ray at a time: each takes every core
def test_ray_gives_the_local_results_and_survives_a_worker_killed_midway(
    tmp_path: Path, ray_options: dict[str, Any]
) -> None:
    local = run_units(_units(tmp_path / "local", 3))
    stats = SweepStats()
    marker = str(tmp_path / "marker")
    units = [*_units(tmp_path / "ray", 3), Unit("dies", {"k": 1}, dies_once, (marker, 4), path=tmp_path / "d.json")]
    rows = run_units(units, executor="ray", ray_init=ray_options, retries=1, stats=stats)
    assert _values(rows) == [*_values(local), (4, 16)] and sorted(stats.computed) == ["dies", "u0", "u1", "u2"]
    assert {r["pid"] for r in rows}.isdisjoint({os.getpid()})  # they ran in Ray's workers
    rerun = SweepStats()
    assert run_units(units, executor="ray", ray_init=ray_options, stats=rerun) == rows
    assert rerun.computed == [] and len(rerun.reused) == 4
