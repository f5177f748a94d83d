"""Shared fixtures of the defence and scan tests: backdoored tiny models, trained once per session."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from pruneguard.attacks.backdoor import BadNets, Blend, triggered_eval_set
from pruneguard.data import ArrayData, load_dataset
from pruneguard.models import create_model
from pruneguard.models.fit import TrainConfig
from pruneguard.scan.reversal import ReversalConfig, ReversedTrigger, reverse_trigger
from pruneguard.training.train import train_model

# the reversal the unlearning and reversal tests share (``reversed_toy``)
TOY_REVERSAL = ReversalConfig(steps=300, batch_size=64, lr=0.1)


def _toy_model() -> nn.Module:
    """An untrained model of the toys' architecture (from the global random state)."""
    return create_model("gap_cnn", num_classes=10, input_shape=(1, 8, 8), mean=(0.3,), std=(0.4,), width=0.25)


def _backdoored(attack: BadNets | Blend) -> tuple[nn.Module, ArrayData, ArrayData, ArrayData]:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    fit, clean = train.subset(torch.arange(1200)), train.subset(torch.arange(1200, len(train)))
    poisoned = attack.poison(fit, rate=0.1, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = _toy_model()
    train_model(model, poisoned.data, TrainConfig(epochs=6, batch_size=64, lr=0.05, crop_padding=0, hflip=False))
    return model, clean, test, triggered_eval_set(test, lambda x, y: attack(None, x, y), 0)


@pytest.fixture(scope="session")
def toy() -> tuple[nn.Module, ArrayData, ArrayData, ArrayData]:
    """A BadNets-backdoored GAP-CNN on digits; the defender's clean split is 238 held-out training images."""
    return _backdoored(BadNets(target_label=0, patch_size=2))


@pytest.fixture(scope="session")
def blend_toy() -> tuple[nn.Module, ArrayData, ArrayData, ArrayData]:
    """The toy with a Blend trigger (alpha 0.2, whole-image noise) instead of a patch."""
    return _backdoored(Blend(target_label=0))


@pytest.fixture(scope="session")
def reversed_toy(toy) -> ReversedTrigger:
    """The patch trigger reversed to the toy's backdoor target (``TOY_REVERSAL``, seed 0)."""
    model, clean, _, _ = toy
    return reverse_trigger(model, clean, 0, TOY_REVERSAL, generator=torch.Generator().manual_seed(0))


def _toy_architecture() -> nn.Module:
    """A fresh, untrained model of the toy's architecture, seeded as ``ModelMeta.build(seed=0)`` is (purify's
    reference): its initial weights do not depend on which tests ran before in this process."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _toy_model()


@pytest.fixture(scope="session")
def toy_build() -> Callable[[], nn.Module]:
    """``build_reference`` for the toy (see ``_toy_architecture``)."""
    return _toy_architecture
