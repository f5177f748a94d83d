"""The defence registry: one signature for every defence, the input untouched, reproducible, validated configs."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch

from pruneguard.defenses import (
    DEFENSES,
    FinePruningConfig,
    FTConfig,
    FTSAMConfig,
    IBAUConfig,
    NADConfig,
    SAUConfig,
    default_config,
    defend,
    fine_pruning,
    finetune_defense,
    nad,
)
from pruneguard.errors import ConfigError, UnknownNameError

# short settings per defence, so that every check runs in well under a second
FAST: dict[str, Any] = {
    "ft": FTConfig(epochs=1),
    "fine_pruning": FinePruningConfig(epochs=1, step=4),
    "nad": NADConfig(epochs=1, teacher_epochs=1, betas=(50.0, 50.0, 50.0)),
    "ft_sam": FTSAMConfig(epochs=1),
    "sau": SAUConfig(rounds=1),
    "i_bau": IBAUConfig(rounds=1),
}
# one bad value per field that validates
BAD: dict[str, list[tuple[str, Any]]] = {
    "ft": [("epochs", 0), ("lr", -1.0), ("batch_size", 1)],
    "fine_pruning": [("max_acc_drop", 2.0), ("max_ratio", 1.0), ("step", 0), ("epochs", -1)],
    "nad": [("betas", (-1.0,)), ("layers", ()), ("teacher_epochs", 0), ("p", 0.0)],
    "ft_sam": [("rho", 0.0), ("epochs", 0), ("eta", -1.0), ("label_smoothing", 1.0), ("lr", float("nan"))],
    "sau": [("eps", 0.0), ("steps", 0), ("start", "min"), ("lambda_shared", -1.0), ("rounds", 1.5)],
    "i_bau": [("fixed_point_iters", 0), ("eps", -1.0), ("perturbed_share", 0.0), ("inner_lr", 0.0)],
}
NEW = ("ft_sam", "sau", "i_bau")


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_every_defence_is_registered_with_its_config() -> None:
    assert DEFENSES.names() == sorted(FAST)
    for name, cfg in FAST.items():
        assert isinstance(cfg, DEFENSES.get(name).config)
        assert type(default_config(name)) is type(cfg)
    with pytest.raises(UnknownNameError, match="ft_sam"):
        DEFENSES.get("ftsam")


@pytest.mark.parametrize("name", sorted(FAST))
def test_input_untouched_output_runs_and_runs_are_reproducible(toy, name: str) -> None:
    model, clean, test, _ = toy
    before = copy.deepcopy(model.state_dict())
    model.train()
    a, info = defend(name, model, clean, FAST[name], seed=3)
    assert model.training and all(m.training for m in model.modules())  # flags of the input kept
    model.eval()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert a is not model and not a.training and not same_weights(a, model)
    assert info["method"] == name
    with torch.no_grad():
        logits = a(test.float_x()[:5])
    assert logits.shape == (5, 10) and bool(torch.isfinite(logits).all())
    b, _ = defend(name, model, clean, FAST[name], seed=3)
    assert same_weights(a, b)


@pytest.mark.parametrize("name", NEW)
def test_pruned_weights_stay_zero(toy, name: str) -> None:
    model, clean, _, _ = toy
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        pruned.features[4].weight[:, :3] = 0.0
    out, _ = defend(name, pruned, clean, FAST[name], seed=0)
    assert bool((out.features[4].weight[:, :3] == 0).all())
    assert not torch.equal(out.features[4].weight, pruned.features[4].weight)


@pytest.mark.parametrize(("name", "field", "value"), [(n, f, v) for n, bad in BAD.items() for f, v in bad])
def test_bad_config_values_are_rejected_in_one_line(name: str, field: str, value: Any) -> None:
    config_type = DEFENSES.get(name).config
    with pytest.raises(ConfigError) as err:
        config_type(**{field: value})
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{field}={value!r} ") and "accepted:" in message


def test_defend_rejects_a_config_of_another_defence_and_a_bad_seed(toy) -> None:
    model, clean, _, _ = toy
    with pytest.raises(ConfigError, match="config=FTConfig .*'sau'.*SAUConfig"):
        defend("sau", model, clean, FTConfig())
    with pytest.raises(ConfigError, match="seed"):
        defend("ft", model, clean, FTConfig(epochs=1), seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        FTConfig().epochs = 3  # type: ignore[misc]


def test_adapters_give_the_functions_results(toy) -> None:
    model, clean, _, _ = toy
    pairs = [
        (
            defend("ft", model, clean, FTConfig(epochs=2, lr=0.02), seed=4),
            finetune_defense(model, clean, epochs=2, lr=0.02, seed=4),
        ),
        (
            defend("fine_pruning", model, clean, FinePruningConfig(epochs=1, step=4), seed=4),
            fine_pruning(model, clean, epochs=1, step=4, seed=4),
        ),
        (
            defend("nad", model, clean, FAST["nad"], seed=4),
            nad(model, clean, epochs=1, teacher_epochs=1, betas=[50.0] * 3, seed=4),
        ),
    ]
    for (a, info_a), (b, info_b) in pairs:
        assert same_weights(a, b) and info_a["method"] == info_b["method"]
