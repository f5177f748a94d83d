"""NAD: attention maps, automatic layer choice, the attention-distillation term, a new model, clean accuracy."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pruneguard.data.tensors import ArrayData
from pruneguard.defenses import attention_layers, attention_loss, attention_map, finetune_defense, nad
from pruneguard.defenses.nad import capture_outputs
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr
from pruneguard.models import create_model

LAYERS = ["features.2", "features.6", "features"]


@pytest.fixture(scope="module")
def teacher(toy) -> nn.Module:
    """Fine-tuned with another recipe than the student's (the same recipe makes beta=0 NAD equal the teacher)."""
    return finetune_defense(toy[0], toy[1], epochs=10, lr=0.05, augment=True, seed=5)[0]


def at_losses(student: nn.Module, teacher: nn.Module, data: ArrayData) -> list[float]:
    with torch.no_grad(), capture_outputs(student, LAYERS) as s, capture_outputs(teacher, LAYERS) as t:
        student(data.float_x())
        teacher(data.float_x())
        return [float(attention_loss(s[n], t[n])) for n in LAYERS]


def test_attention_map_is_the_normalised_channel_mean_of_powers() -> None:
    a = torch.randn(2, 3, 4, 5)
    am = attention_map(a, p=2)
    manual = (a**2).mean(1).flatten(1)
    assert am.shape == (2, 20)
    assert torch.allclose(am, manual / manual.norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(am.norm(dim=1), torch.ones(2))
    assert torch.allclose(attention_map(10 * a), am, atol=1e-6)  # scale-free
    assert float(attention_loss(a, a)) == 0.0 and float(attention_loss(a, a.flip(-1))) > 0


def test_layers_are_the_last_conv_stage_outputs() -> None:
    gap = create_model("gap_cnn", num_classes=3, input_shape=(1, 8, 8), width=0.25)
    assert attention_layers(gap, torch.rand(2, 1, 8, 8)) == LAYERS
    resnet = create_model("resnet18_cifar", num_classes=3, input_shape=(3, 16, 16), width=0.0625)
    assert attention_layers(resnet, torch.rand(2, 3, 16, 16)) == ["layer2", "layer3", "layer4"]
    assert attention_layers(resnet, torch.rand(2, 3, 16, 16), num_layers=1) == ["layer4"]
    # on 8x8 inputs layer4 is 1x1 (a constant attention map) and is skipped
    assert attention_layers(resnet, torch.rand(2, 3, 8, 8)) == ["layer1", "layer2", "layer3"]


def test_distillation_pulls_student_attention_to_the_teacher(toy, teacher) -> None:
    model, clean, test, trig = toy
    before = copy.deepcopy(model.state_dict())
    teacher_state = copy.deepcopy(teacher.state_dict())
    kwargs = {"epochs": 5, "lr": 0.01, "augment": False, "teacher": teacher}
    plain, info0 = nad(model, clean, betas=[0.0, 0.0, 0.0], **kwargs)
    student, info = nad(model, clean, betas=[30.0, 30.0, 30.0], **kwargs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched
    assert all(torch.equal(teacher_state[k], v) for k, v in teacher.state_dict().items())
    assert student is not model and not student.training and not teacher.training
    assert info["layers"] == LAYERS and info["betas"] == [30.0] * 3
    assert all(row["at"] > 0 for row in info["history"]) and all(row["at"] == 0 for row in info0["history"])
    assert all(row["loss"] == pytest.approx(row["ce"] + row["at"]) for row in info["history"])
    assert info["history"][-1]["at"] < 0.6 * info["history"][0]["at"]  # the distillation term decreases
    distilled, undistilled = sum(at_losses(student, teacher, clean)), sum(at_losses(plain, teacher, clean))
    assert distilled < 0.6 * undistilled  # and it is what pulls the attention maps to the teacher's
    assert evaluate_accuracy(student, test) >= evaluate_accuracy(model, test) - 0.03
    assert evaluate_asr(student, trig, 0) <= evaluate_asr(model, trig, 0) + 0.02


def test_trains_its_own_teacher_and_is_reproducible(toy) -> None:
    model, clean, _, _ = toy
    a, info = nad(model, clean, epochs=1, teacher_epochs=1, betas=[50.0] * 3, lr=0.01, seed=1)
    b, _ = nad(model, clean, epochs=1, teacher_epochs=1, betas=[50.0] * 3, lr=0.01, seed=1)
    assert len(info["teacher_history"]) == 1 and len(info["history"]) == 1
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_validation(toy) -> None:
    model, clean, _, _ = toy
    with pytest.raises(ConfigError, match="betas"):
        nad(model, clean, betas=[1.0])
    with pytest.raises(ConfigError, match="layers"):
        nad(model, clean, layers=["nope"])
    with pytest.raises(ConfigError, match="teacher_epochs"):
        nad(model, clean, teacher_epochs=0)
