"""Tiny synthetic models and data for the evasion-attack tests (CPU, well under a second to build)."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_CLASSES = 4
# Class k = "this 3x3 stroke appears somewhere in the 8x8 image": a local feature, so a universal patch can
# learn it and a max-pooling net recognises it anywhere.
MOTIFS = torch.tensor(
    [
        [[0, 0, 0], [1, 1, 1], [0, 0, 0]],
        [[0, 1, 0], [0, 1, 0], [0, 1, 0]],
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        [[0, 0, 1], [0, 1, 0], [1, 0, 0]],
    ],
    dtype=torch.float32,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and the test machine is shared); restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_motif_data(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(n, 1, 8, 8)`` images in [0, 1]: noise in [0, 0.5] with the class motif at a random place."""
    y = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    x = 0.5 * torch.rand(n, 1, 8, 8, generator=generator)
    rows = torch.randint(0, 6, (n, 1, 1), generator=generator) + torch.arange(3).view(1, 3, 1)
    cols = torch.randint(0, 6, (n, 1, 1), generator=generator) + torch.arange(3).view(1, 1, 3)
    idx = (torch.arange(n).view(n, 1, 1), torch.zeros(n, 1, 1, dtype=torch.long), rows, cols)
    x[idx] = torch.maximum(x[idx], MOTIFS[y])
    return x, y


def two_conv_net(seed: int = 0) -> nn.Module:
    """A two-conv net on 8x8 inputs with BatchNorm (so train/eval mode matters) and global max pooling."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(8, NUM_CLASSES),
    )


@pytest.fixture(scope="session")
def motif_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x_train, y_train = make_motif_data(256, g)
    x_test, y_test = make_motif_data(128, g)
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def _trained(motif_data: tuple[Tensor, Tensor, Tensor, Tensor]) -> nn.Module:
    x, y = motif_data[:2]
    model = two_conv_net(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    threads = torch.get_num_threads()  # session scope runs before the module-scoped _one_thread
    torch.set_num_threads(1)
    for _ in range(30):
        idx = torch.randint(0, len(x), (128,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture
def model(_trained: nn.Module) -> nn.Module:
    """A fresh copy of the trained two-conv net, in eval mode (tests may change its flags)."""
    return copy.deepcopy(_trained)


@pytest.fixture
def batch(motif_data: tuple[Tensor, Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    return motif_data[2], motif_data[3]
