"""``pruneguard export --format onnx``: dense, ANP-purified (neurons zeroed), magnitude-pruned and channel-pruned
models, each checked with onnxruntime against PyTorch on 256 test images of digits."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from pruneguard.cli.app import main  # noqa: E402
from pruneguard.data.datasets import dataset_info, load_dataset  # noqa: E402
from pruneguard.data.tensors import to_float  # noqa: E402
from pruneguard.export import export_onnx  # noqa: E402
from pruneguard.models.io import ModelMeta, load_model, save_model  # noqa: E402
from pruneguard.pruning.base import apply_plan_, layer_sparsity, make_permanent_  # noqa: E402
from pruneguard.pruning.magnitude import MagnitudePruner  # noqa: E402
from pruneguard.pruning.neurons import find_neuron_groups, prune_neurons_  # noqa: E402
from pruneguard.utils.io import sha256_file  # noqa: E402


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    """small_cnn trained briefly on digits, saved by pruneguard (metadata names the dataset)."""
    info = dataset_info("digits")
    meta = ModelMeta("small_cnn", 10, info.input_shape, info.mean, info.std, {"width": 0.25}, dataset="digits")
    model = meta.build(seed=0)
    train = load_dataset("digits", "train")
    x, y = to_float(train.x).float(), train.y
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(3):
        for i in range(0, len(y), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
    path = tmp_path_factory.mktemp("export") / "dense.safetensors"
    save_model(path, model.eval(), meta)
    return path


def _run(model: Path, out: Path, capsys) -> dict:
    assert main(["-q", "export", "--model", str(model), "--format", "onnx", "--out", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _assert_matches(result: dict, out: Path) -> None:
    check = result["check"]
    assert check["n"] == 256 and "test rows of digits" in check["inputs"]
    assert check["max_abs_diff"] <= 1e-4 and check["argmax_agreement"] == 1.0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["pruneguard.onnx_check"])["max_abs_diff"] == check["max_abs_diff"]
    assert json.loads(props["pruneguard.model"])["arch"] == "small_cnn"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": torch.rand(3, 1, 8, 8).numpy()})[0].shape == (3, 10)  # batch is dynamic


def test_dense_export_matches_pytorch(dense: Path, tmp_path: Path, capsys) -> None:
    before = sha256_file(dense)
    out = tmp_path / "dense.onnx"
    result = _run(dense, out, capsys)
    _assert_matches(result, out)
    assert result["model_sha256"] == before == sha256_file(dense) and result["out_sha256"] == sha256_file(out)


def test_purified_export_matches_pytorch(dense: Path, tmp_path: Path, capsys) -> None:
    model, meta = load_model(dense)
    groups = find_neuron_groups(model, torch.zeros(2, 1, 8, 8))
    total = sum(g.size for g in groups)
    prune_neurons_(model, groups, torch.arange(0, total, 3))  # a third of the neurons zeroed, as ANP would
    path = tmp_path / "purified.safetensors"
    save_model(path, model, meta)
    out = tmp_path / "purified.onnx"
    _assert_matches(_run(path, out, capsys), out)


def test_magnitude_pruned_export_matches_pytorch(dense: Path, tmp_path: Path, capsys) -> None:
    model, meta = load_model(dense)
    apply_plan_(model, MagnitudePruner(sparsity=0.6).plan(model))
    x = to_float(load_dataset("digits", "test").x[:64]).float()
    check = export_onnx(tmp_path / "masked.onnx", model, x, inputs="64 test rows")  # masks still installed
    assert check.max_abs_diff <= 1e-4 and check.argmax_agreement == 1.0
    make_permanent_(model)
    assert max(layer_sparsity(model).values()) > 0.5
    path = tmp_path / "magnitude.safetensors"
    save_model(path, model, meta)
    out = tmp_path / "magnitude.onnx"
    _assert_matches(_run(path, out, capsys), out)


def test_channel_pruned_export_matches_pytorch(dense: Path, tmp_path: Path, capsys) -> None:
    hard = tmp_path / "harden"
    args = ["--structured", "--target-sparsity", "0.3", "--step", "0.3", "--finetune-epochs", "0"]
    args += ["--max-acc-drop", "0.9", "--no-robust-stop"]  # keep the pruned model whatever its accuracy
    args += ["--n-eval", "60", "--clean-samples", "60", "--pgd-steps", "2", "--square-queries", "0"]
    assert main(["-q", "harden", "--model", str(dense), "--out", str(hard), *args]) == 0
    capsys.readouterr()
    out = tmp_path / "channel.onnx"
    result = _run(hard / "hardened.safetensors", out, capsys)
    assert result["structured"] is True
    _assert_matches(result, out)
    dense_params = sum(p.numel() for p in load_model(dense)[0].parameters())
    graph = onnx.load(str(out)).graph
    onnx_params = sum(int(torch.tensor(list(t.dims)).prod()) for t in graph.initializer if len(t.dims) > 1)
    assert onnx_params < dense_params  # the channels are gone from the exported graph too


def test_export_refuses_overwrite_and_bad_format(dense: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep")
    assert main(["export", "--model", str(dense), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep"
    assert main(["export", "--model", str(dense), "--out", str(tmp_path / "m2.onnx"), "--format", "tflite"]) == 2
    assert "--format" in capsys.readouterr().err


def test_export_without_dataset_checks_on_uniform_inputs(dense: Path, tmp_path: Path, capsys) -> None:
    model, meta = load_model(dense)
    path = tmp_path / "nodata.safetensors"
    save_model(path, model, replace(meta, dataset=None))
    result = _run(path, tmp_path / "nodata.onnx", capsys)
    assert "uniform random inputs" in result["check"]["inputs"] and result["check"]["argmax_agreement"] == 1.0


def test_harden_writes_onnx_beside_the_safetensors(dense: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "harden"
    args = ["--target-sparsity", "0.3", "--step", "0.3", "--finetune-epochs", "0", "--quantize", "int8", "--onnx"]
    args += ["--n-eval", "60", "--clean-samples", "60", "--pgd-steps", "2", "--square-queries", "0"]
    assert main(["-q", "harden", "--model", str(dense), "--out", str(out), *args]) == 0
    assert "ONNX float: hardened.onnx" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    rec = report["onnx"]["float"]
    assert rec["n"] == 256 and rec["max_abs_diff"] <= 1e-4 and rec["argmax_agreement"] == 1.0
    props = {p.key: p.value for p in onnx.load(str(out / "hardened.onnx")).metadata_props}
    assert json.loads(props["pruneguard.model"])["dataset"] == "digits"
    int8 = report["onnx"]["int8"]
    # this toolchain (TorchScript exporter, onnxruntime) takes the FX int8 model as a QDQ graph: int8 weights
    # between QuantizeLinear / DequantizeLinear, which onnxruntime runs with int8 kernels
    assert int8["file"] == "hardened_int8.onnx" and (out / "hardened_int8.onnx").is_file()
    graph = onnx.load(str(out / "hardened_int8.onnx")).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}
    tensors = [*graph.initializer, *(a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute)]
    assert any(t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4 for t in tensors)  # conv weights
    assert int8["argmax_agreement"] >= 0.95
