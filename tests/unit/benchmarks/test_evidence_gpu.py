"""benchmarks/evidence_gpu.sh: at its deadline it packs the named splits' cached rows and models (and nothing of
other splits) into archives that unpack into another machine's cache."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _cache(root: Path) -> None:
    for name in ("dev3-00-aaaa", "dev3-05-bbbb", "eval4-01-cccc"):
        folder = root / "models" / name
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(os.urandom(4096))
        (folder / "result.json").write_text('{"seconds": 1}')
        (folder / "checkpoint.pt").write_bytes(b"resume state: not packed")
    (root / "evidence").mkdir()
    (root / "evidence" / "dev3-00-aaaa-0.01.json").write_text('{"row": 0}')
    (root / "evidence" / "eval4-01-cccc-0.01.json").write_text('{"row": 1}')


def test_an_expired_deadline_packs_the_cached_rows_and_models_of_the_named_splits(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    _cache(cache)
    env = {**os.environ, "CACHE": str(cache), "DEVICE": "cpu", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "evidence_gpu.sh"), "0", str(out), "dev3"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 rows, 2 models packed" in done.stdout
    with tarfile.open(out / "rows.tar.gz") as tar:
        assert tar.getnames() == ["evidence/dev3-00-aaaa-0.01.json"]
    parts = sorted(out.glob("models.tar.gz.part-*"))
    (tmp_path / "models.tar.gz").write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(tmp_path / "models.tar.gz") as tar:
        names = sorted(tar.getnames())
        tar.extractall(tmp_path / "back", filter="data")
    assert names == sorted(
        f"models/{m}/{f}" for m in ("dev3-00-aaaa", "dev3-05-bbbb") for f in ("model.safetensors", "result.json")
    )
    back = tmp_path / "back" / "models" / "dev3-05-bbbb" / "model.safetensors"
    assert back.read_bytes() == (cache / "models" / "dev3-05-bbbb" / "model.safetensors").read_bytes()


def test_no_split_is_refused_with_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "evidence_gpu.sh"), "10", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "name at least one split" in done.stderr
