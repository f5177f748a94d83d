"""IDX reader/writer: round trips, and corrupt files raise ConfigError."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from pruneguard.data.idx import read_idx, write_idx
from pruneguard.errors import ConfigError


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize(
    ("dtype", "shape"), [(np.uint8, (5, 28, 28)), (np.uint8, (7,)), (np.int8, (3, 4)), (np.uint8, (0, 2))]
)
def test_round_trip(tmp_path: Path, suffix: str, dtype: type, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max + 1, size=shape).astype(dtype)
    path = tmp_path / f"x-idx{suffix}"
    write_idx(path, array)
    if suffix == ".gz":
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # really gzip-compressed
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype)
    assert out.shape == shape
    np.testing.assert_array_equal(out, array)


def test_header_layout_matches_the_idx_spec(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([3, 1, 4], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 0x08, 1]) + struct.pack(">I", 3) + bytes([3, 1, 4])


def test_reads_big_endian_int32_as_native(tmp_path: Path) -> None:
    values = np.array([[1, -2], [70000, 5]], dtype=">i4")
    path = tmp_path / "ints-idx2-int"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 2) + values.tobytes())
    out = read_idx(path)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, values.astype(np.int32))


def test_write_rejects_other_dtypes(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="float32"):
        write_idx(tmp_path / "f", np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x00\x08",  # shorter than the magic number
        b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00",  # first byte not zero
        b"\x00\x00\x42\x01" + struct.pack(">I", 1) + b"\x00",  # unknown type code
        b"PK\x03\x04 a zip file, not IDX",
    ],
)
def test_bad_magic_raises_config_error(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(payload)
    with pytest.raises(ConfigError, match="magic"):
        read_idx(path)


def test_truncated_data_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte"
    write_idx(path, np.zeros((4, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ConfigError, match="header promises"):
        read_idx(path)


def test_truncated_header_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 4))  # promises 3 dims, holds 1
    with pytest.raises(ConfigError, match="truncated"):
        read_idx(path)


def test_truncated_gzip_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte.gz"
    write_idx(path, np.arange(4 * 28 * 28, dtype=np.int64).astype(np.uint8).reshape(4, 28, 28))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ConfigError, match="could not be read"):
        read_idx(path)


def test_corrupt_gzip_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, size=(4, 28, 28), dtype=np.uint8))
    raw = bytearray(path.read_bytes())
    for i in range(12, 40):  # flip bits inside the deflate stream
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="could not be read"):
        read_idx(path)


def test_missing_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="could not be read"):
        read_idx(tmp_path / "absent-idx3-ubyte.gz")
