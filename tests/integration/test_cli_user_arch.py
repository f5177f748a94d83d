"""A model as users receive it: their own class (defined here), a plain ``torch.save`` state dict, and
normalisation inside the model, through ``scan``, ``attack`` and ``harden`` with ``--arch module:factory``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from pruneguard.cli.app import main
from pruneguard.data.datasets import load_dataset
from pruneguard.models.io import read_meta
from pruneguard.utils.io import sha256_file

ARCH = f"{__name__}:make_net"


class UserNet(nn.Module):
    """A user's digits classifier (1x8x8 inputs in [0, 1]) that normalises its inputs itself."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - 0.3) / 0.4))


def make_net(num_classes: int, width: int = 8) -> nn.Module:
    return UserNet(num_classes, width)


class RawNet(UserNet):
    """The same network expecting inputs already normalised (``(x - 0.3) / 0.4``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_raw_net(num_classes: int) -> nn.Module:
    return RawNet(num_classes)


@pytest.fixture(scope="module")
def state_dict_file(tmp_path_factory) -> Path:
    """A UserNet trained briefly on digits, saved the way users save models: ``torch.save(model.state_dict())``."""
    torch.manual_seed(0)
    train = load_dataset("digits", "train")
    x, y = train.x.float() / 255.0 if train.x.dtype == torch.uint8 else train.x.float(), train.y
    model = make_net(10)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(6):
        for i in range(0, len(y), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
    path = tmp_path_factory.mktemp("user") / "user_net.pt"
    torch.save(model.state_dict(), path)
    return path


USER = ["--arch", ARCH, "--dataset", "digits", "--normalization-inside"]


def test_scan_runs_on_a_user_state_dict(state_dict_file: Path, tmp_path: Path) -> None:
    before = sha256_file(state_dict_file)
    out = tmp_path / "scan"
    args = ["--clean-samples", "60", "--eps", "0.2", "--steps", "2", "--restarts", "1"]
    assert main(["-q", "scan", "--model", str(state_dict_file), "--out", str(out), *USER, *args]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] in ("clean", "suspicious") and report["clean_split_accuracy"] > 0.5
    assert report["config"]["arch"] == ARCH and report["config"]["normalization_inside"] is True
    assert sha256_file(state_dict_file) == before


def test_attack_runs_on_a_user_state_dict(state_dict_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "attack"
    args = ["--attack", "fgsm", "--eps", "0.1", "--n-samples", "100"]
    assert main(["-q", "attack", "--model", str(state_dict_file), "--out", str(out), *USER, *args]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["clean_accuracy"] > 0.5 and result["robust_accuracy"] <= result["clean_accuracy"]


def test_harden_writes_the_description_into_its_model(state_dict_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "harden"
    args = ["--target-sparsity", "0.2", "--step", "0.2", "--finetune-epochs", "0", "--n-eval", "60"]
    args += ["--clean-samples", "60", "--pgd-steps", "2", "--square-queries", "0"]
    assert main(["-q", "harden", "--model", str(state_dict_file), "--out", str(out), *USER, *args]) == 0
    meta = read_meta(out / "hardened.safetensors")
    assert meta is not None and meta.arch == ARCH and meta.dataset == "digits"
    assert meta.num_classes == 10 and meta.input_shape == (1, 8, 8) and meta.mean == (0.0,) and meta.std == (1.0,)
    # the next command needs only --arch (the consent to import the user's code): no --dataset, no shapes
    again = tmp_path / "again"
    args = ["--attack", "fgsm", "--eps", "0.1", "--n-samples", "60"]
    assert (
        main(["-q", "attack", "--model", str(out / "hardened.safetensors"), "--out", str(again), "--arch", ARCH, *args])
        == 0
    )
    assert json.loads((again / "result.json").read_text())["dataset"] == "digits"
    # without --arch a file naming user code is refused, not imported
    code = main(["-q", "attack", "--model", str(out / "hardened.safetensors"), "--out", str(tmp_path / "x"), *args])
    assert code == 2


def test_mean_std_are_applied_to_a_model_that_expects_normalised_inputs(state_dict_file: Path) -> None:
    from pruneguard.workflows.common import describe_model

    inside = describe_model({"arch": ARCH, "normalization_inside": True}, dataset="digits")
    outside = describe_model({"arch": f"{__name__}:make_raw_net", "mean": (0.3,), "std": (0.4,)}, dataset="digits")
    assert inside is not None and outside is not None and outside.mean == (0.3,) and inside.mean == (0.0,)
    a, b = inside.build(), outside.build()
    state = torch.load(state_dict_file, weights_only=True)
    a.load_state_dict(state)
    b.load_state_dict(state)  # the hook leaves the state dict's names as the user's
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(b.eval()(x), a.eval()(x))
    assert not torch.allclose(b(x), b.head(b.features(x)))  # the hook did normalise


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mean", "0.3"], "--mean and --std go together"),
        (["--num-classes", "10"], None),
        (["--input-shape", "1,x,8"], "--input-shape"),
        (["--mean", "0.3", "--std", "0", "--arch", ARCH], "--std"),
    ],
)
def test_bad_descriptions_are_one_line_exit_2(state_dict_file: Path, tmp_path: Path, capsys, extra, message) -> None:
    args = ["scan", "--model", str(state_dict_file), "--out", str(tmp_path / "o"), "--dataset", "digits", *extra]
    if "--arch" not in extra and extra[0] != "--num-classes":
        args += ["--arch", ARCH]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert (message or "give --arch too") in err


def test_export_of_a_user_model_with_normalisation_applied_before_it(state_dict_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "user.onnx"
    raw = ["--arch", f"{__name__}:make_raw_net", "--dataset", "digits", "--mean", "0.3", "--std", "0.4"]
    assert main(["-q", "export", "--model", str(state_dict_file), "--out", str(out), "--json", *raw]) == 0
    import onnxruntime as ort

    x = torch.rand(5, 1, 8, 8)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    reference = make_net(10)
    reference.load_state_dict(torch.load(state_dict_file, weights_only=True))
    torch.testing.assert_close(torch.from_numpy(got), reference.eval()(x).detach(), atol=1e-4, rtol=1e-4)
