"""glibc heap settings: freed tensor-sized blocks are reused instead of being faulted in again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pruneguard.errors import ConfigError
from pruneguard.utils.allocator import MALLOC_ENV, tune_allocator

_PROBE = """
import json, resource
from pruneguard.utils.allocator import tune_allocator
tuned = tune_allocator()
import numpy as np
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(1 << 24, dtype=np.float32)  # 64 MiB, every page written
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"tuned": tuned, "faults": faults}))
"""


def _probe(mode: str) -> dict:
    env = {**os.environ, MALLOC_ENV: mode}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc heap settings")
def test_tuned_heap_reuses_freed_blocks_without_page_faults() -> None:
    default, tuned = _probe("default"), _probe("tuned")
    if not tuned["tuned"]:
        pytest.skip("not glibc")
    assert default["tuned"] is False
    # glibc's default maps a 64 MiB block afresh each time: every repeat faults its pages in again
    assert min(default["faults"][1:]) > 50
    # tuned: the first allocation grows the heap, the repeats reuse it
    assert max(tuned["faults"][1:]) <= 5


def test_unknown_mode_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MALLOC_ENV, "jemalloc")
    with pytest.raises(ConfigError, match="PRUNEGUARD_MALLOC='jemalloc'.*accepted: tuned, default"):
        tune_allocator()
