"""Fuzzing the CLI's inputs: every bad model file, metadata, clean split or option value must give exit code 2,
a one-line ``error:`` message without a traceback, and write nothing to ``--out``.

The data region of a safetensors file has no checksum, so a flipped byte there is just another weight (NaN/Inf
values excepted, tested on their own); byte flips are aimed at the header and its length prefix.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load, save
from tiny_models import digits_meta

from pruneguard.cli.app import main
from pruneguard.data.datasets import load_dataset
from pruneguard.models.io import FORMAT, save_model

FUZZ = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
SCAN_FAST = ["--clean-samples", "40", "--eps", "0.2", "--steps", "1", "--restarts", "1"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A valid (untrained) digits model file, as ``pruneguard train`` writes it: with held-out indices."""
    torch.manual_seed(0)
    meta = digits_meta()
    path = tmp_path_factory.mktemp("fuzz") / "model.safetensors"
    save_model(path, meta.build(), meta)
    return path


@pytest.fixture(scope="module")
def parts(model_file: Path) -> dict[str, Any]:
    blob = model_file.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    return {
        "blob": blob,
        "n": n,
        "header": header,
        "data": blob[8 + n :],
        "meta": json.loads(header["__metadata__"]["pruneguard"]),
    }


def run_cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue()


def assert_bad_input(args_before_out: list[str], extra: list[str] = ()) -> str:
    """Run a command into a fresh ``--out`` and check the bad-input contract; return the message."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        code, err = run_cli([*args_before_out, "--out", str(out), *extra])
        assert code == 2, err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
        assert not out.exists()
    return err


def scan_file(blob: bytes, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(blob)
        return assert_bad_input(["scan", "--model", str(path)], [*SCAN_FAST, *extra])


def with_header(parts: dict[str, Any], header: dict[str, Any]) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + parts["data"]


def with_meta(parts: dict[str, Any], meta: Any) -> bytes:
    header = dict(parts["header"])
    header["__metadata__"] = {"pruneguard": meta if isinstance(meta, str) else json.dumps(meta)}
    return with_header(parts, header)


# --- corrupted files ---------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_truncated_model_files(parts: dict[str, Any], data: st.DataObject) -> None:
    blob = parts["blob"]
    cut = data.draw(st.one_of(st.integers(0, 8 + parts["n"]), st.integers(0, len(blob) - 1)), label="cut")
    scan_file(blob[:cut])


_STRUCTURAL = set(b'{}[]:,"')


@FUZZ
@given(data=st.data())
def test_byte_flips_in_header(parts: dict[str, Any], data: st.DataObject) -> None:
    blob = bytearray(parts["blob"])
    positions = list(range(8)) + [i for i in range(8, 8 + parts["n"]) if blob[i] in _STRUCTURAL]
    for _ in range(data.draw(st.integers(1, 3), label="flips")):
        pos = data.draw(st.sampled_from(positions), label="pos")
        blob[pos] = data.draw(st.integers(0, 255).filter(lambda b, old=blob[pos]: b != old), label="byte")
    scan_file(bytes(blob))


def test_not_a_model_at_all(tmp_path: Path) -> None:
    for name, content in [("a.safetensors", b""), ("b.safetensors", b"hello world, not a model"), ("c.pt", b"\x80")]:
        path = tmp_path / name
        path.write_bytes(content)
        assert_bad_input(["scan", "--model", str(path)])
    assert_bad_input(["scan", "--model", str(tmp_path / "missing.safetensors")])
    assert_bad_input(["scan", "--model", str(tmp_path)])


# --- wrong metadata ----------------------------------------------------------------------------------------------

_junk = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.lists(st.integers(), max_size=3)
)
_letters = st.text(alphabet="abcxyz:._-", min_size=1, max_size=12)


def _meta_mutation(train_labels: torch.Tensor) -> st.SearchStrategy[tuple[str, Any]]:
    one_class = torch.nonzero(train_labels == 3).flatten().tolist()
    fields: dict[str, st.SearchStrategy[Any]] = {
        "format": st.one_of(_junk, _letters).filter(lambda v: v != FORMAT),
        "arch": st.one_of(_junk, _letters, st.sampled_from(["gap_cnn", "mlp", "resnet18_cifar", "os:getcwd", ":"])),
        "num_classes": st.one_of(_junk, st.integers(-5, 10**15)).filter(lambda v: not (type(v) is int and v == 10)),
        "input_shape": st.one_of(
            st.none(),
            _letters,
            st.integers(),
            st.lists(st.integers(-3, 10**9), max_size=4).filter(lambda v: v != [1, 8, 8]),
        ),
        "mean": st.one_of(st.none(), _letters, st.lists(st.floats(), min_size=2, max_size=4), st.just([])),
        "std": st.one_of(st.none(), _letters, st.lists(st.floats(), min_size=2, max_size=4), st.just([])),
        "kwargs": st.one_of(
            _junk,
            st.fixed_dictionaries(
                {"width": st.sampled_from([math.nan, math.inf, -math.inf, 1e300, 1e6, 4.0, -1.0, "x", None, [1]])}
            ),
            st.fixed_dictionaries({"hidden": st.integers(-(10**12), 10**12).filter(lambda h: h != 128)}),
            st.dictionaries(_letters.filter(lambda k: k not in ("width", "hidden")), _junk, min_size=1, max_size=2),
        ),
        "dataset": st.one_of(
            st.booleans(),
            st.integers(),
            st.lists(_letters, max_size=2),
            _letters,
            st.sampled_from(["fashion_mnist", "mnist", "cifar10", "breast_cancer"]),
        ),
        "holdout_indices": st.one_of(
            st.booleans(),
            st.integers(),
            _letters,
            st.lists(st.integers(1437, 10**9), min_size=1, max_size=5),
            st.lists(st.integers(-(10**6), -1), min_size=1, max_size=5),
            st.lists(st.floats(), min_size=1, max_size=3),
            st.just(one_class),  # a single-class clean split
            st.just(one_class[:1] + [0]),  # fewer held-out samples than --clean-samples
        ),
        "holdout_hash": st.one_of(st.integers(), st.lists(st.integers(), min_size=1), st.booleans()),
        "extra": st.one_of(st.integers(), _letters, st.lists(st.integers(), min_size=1)),
    }
    return st.one_of(
        st.sampled_from(list(fields)).flatmap(lambda k: st.tuples(st.just(k), fields[k])),
        st.tuples(st.just("-delete"), st.sampled_from(["arch", "num_classes", "input_shape", "format"])),
        st.tuples(st.just("-unknown"), _letters.filter(lambda k: k not in fields)),
    )


@pytest.fixture(scope="module")
def train_labels() -> torch.Tensor:
    return load_dataset("digits", "train").y


def test_wrong_metadata(parts: dict[str, Any], train_labels: torch.Tensor) -> None:
    @FUZZ
    @given(mutation=_meta_mutation(train_labels))
    def check(mutation: tuple[str, Any]) -> None:
        key, value = mutation
        meta = dict(parts["meta"])
        if key == "-delete":
            meta.pop(value)
        elif key == "-unknown":
            meta[value] = 1
        else:
            meta[key] = value
        scan_file(with_meta(parts, meta))

    check()


@FUZZ
@given(text=st.one_of(st.text(max_size=20), st.just("[1, 2]"), st.just("null")))
def test_metadata_that_is_not_a_json_object(parts: dict[str, Any], text: str) -> None:
    # an empty string reads as no metadata, which is refused too (--arch is then required)
    scan_file(with_meta(parts, text))


def test_file_without_pruneguard_metadata(parts: dict[str, Any]) -> None:
    header = {k: v for k, v in parts["header"].items() if k != "__metadata__"}
    assert "--arch" in scan_file(with_header(parts, header))


# --- NaN / Inf weights -------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_nan_and_inf_weights(parts: dict[str, Any], data: st.DataObject) -> None:
    state = load(parts["blob"])
    floats = sorted(k for k, v in state.items() if v.is_floating_point() and v.numel())
    name = data.draw(st.sampled_from(floats), label="tensor")
    flat = state[name].flatten().clone()
    flat[data.draw(st.integers(0, flat.numel() - 1), label="index")] = data.draw(
        st.sampled_from([math.nan, math.inf, -math.inf]), label="value"
    )
    state[name] = flat.view_as(state[name])
    blob = save(state, metadata=parts["header"]["__metadata__"])
    assert "NaN or Inf" in scan_file(blob)


# --- clean split, shapes -----------------------------------------------------------------------------------------


@FUZZ
@given(n=st.one_of(st.integers(-(10**20), 1), st.integers(145, 10**20)))
def test_empty_tiny_or_oversized_clean_split(model_file: Path, n: int) -> None:
    assert_bad_input(["scan", "--model", str(model_file)], ["--clean-samples", str(n)])


@pytest.mark.parametrize("dataset", ["fashion_mnist", "mnist", "cifar10", "breast_cancer", "no_such_data"])
def test_mismatched_dataset(model_file: Path, dataset: str) -> None:
    for cmd in ("scan", "purify"):
        assert_bad_input([cmd, "--model", str(model_file)], ["--dataset", dataset])


# --- nonsense option values --------------------------------------------------------------------------------------


def _not_a(kind: type) -> st.SearchStrategy[str]:
    def unparsable(s: str) -> bool:
        try:
            kind(s)
        except ValueError:
            return True
        return False

    return st.text(min_size=1, max_size=12).filter(lambda s: unparsable(s) and not s.startswith("-"))


_out_of_unit = st.one_of(
    st.floats(max_value=0.0, allow_nan=False), st.floats(min_value=1.0, exclude_min=True), st.just(math.nan)
)
_numbers = st.one_of(st.floats().map(repr), st.integers().map(str))

SCAN_BAD = {
    "--clean-fraction": st.one_of(_not_a(float), _out_of_unit.map(repr)),
    "--eps": st.one_of(
        st.text(max_size=12).filter(lambda s: not s.startswith("-")),
        st.lists(st.floats(), min_size=1, max_size=4)
        .filter(lambda v: not all(0 < e <= 1 for e in v))
        .map(lambda v: ",".join(map(repr, v))),
    ),
    "--steps": st.one_of(_not_a(int), st.integers(max_value=0).map(str), st.integers(min_value=1001).map(str)),
    "--restarts": st.one_of(_not_a(int), st.integers(max_value=0).map(str), st.integers(min_value=101).map(str)),
    "--batch-size": st.one_of(_not_a(int), st.integers(max_value=3).map(str), st.integers(min_value=65537).map(str)),
    "--threshold": st.one_of(
        _not_a(float), st.floats(max_value=0, exclude_max=True).map(repr), st.sampled_from(["nan", "inf"])
    ),
    "--seed": st.one_of(
        _not_a(int), st.integers(min_value=2**64).map(str), st.integers(max_value=-(2**63) - 1).map(str)
    ),
    "--threads": st.one_of(_not_a(int), st.integers(max_value=0).map(str)),
}
PURIFY_BAD = {
    "--clean-size": st.one_of(
        _not_a(float).filter(lambda v: not v.strip().endswith("%")),
        st.sampled_from(["0", "-1", "1.5", "0.0", "1", "nan", "inf", "150%", "0%", "2.5"]),
    ),
    "anp.eps": _out_of_unit.filter(lambda v: not (v == 0.0 or v == 1.0)).map(repr),
    "anp.iterations": st.one_of(st.integers(max_value=0).map(str), st.sampled_from(["x", "1.5", "[1]", "{}"])),
    "select.threshold": st.one_of(
        st.sampled_from(["lots", "[0.2]", "-0.1", "1.01"]), _numbers.filter(lambda s: not _is_unit(s))
    ),
    "anp.lr": st.sampled_from(["0", "nan", "inf", "x", "-1"]),
    "--seed": SCAN_BAD["--seed"],
}


def _is_unit(s: str) -> bool:
    try:
        return 0.0 <= float(s) <= 1.0
    except ValueError:
        return False


def _eps_is_valid(s: str) -> bool:
    try:
        values = [float(v) for v in s.split(",")]
    except ValueError:
        return False
    return all(0 < v <= 1 for v in values)


@FUZZ
@given(data=st.data())
def test_nonsense_scan_options(model_file: Path, data: st.DataObject) -> None:
    option = data.draw(st.sampled_from(sorted(SCAN_BAD)), label="option")
    value = data.draw(SCAN_BAD[option], label="value")
    if option == "--eps" and _eps_is_valid(value):
        return
    assert_bad_input(["scan", "--model", str(model_file)], [option, value])


@FUZZ
@given(data=st.data())
def test_nonsense_purify_options(model_file: Path, data: st.DataObject) -> None:
    option = data.draw(st.sampled_from(sorted(PURIFY_BAD)), label="option")
    value = data.draw(PURIFY_BAD[option], label="value")
    given = [option, value] if option.startswith("--") else ["--set", f"{option}={value}"]
    assert_bad_input(["purify", "--model", str(model_file)], ["--set", "anp.iterations=1", *given])
