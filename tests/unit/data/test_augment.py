"""Seeded batch augmentation: random crop and horizontal flip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pruneguard.data.augment import augment_batch, random_crop, random_hflip


def _images(n: int = 6, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_crop_keeps_shape_and_dtype() -> None:
    x = _images(h=8, w=10)
    out = random_crop(x, 2, generator=_gen(0))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device


def test_random_crop_is_reproducible() -> None:
    x = _images(n=16)
    a = random_crop(x, 3, generator=_gen(1))
    b = random_crop(x, 3, generator=_gen(1))
    c = random_crop(x, 3, generator=_gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_crop_takes_windows_of_the_padded_image() -> None:
    x, p = _images(n=5, h=6, w=7), 2
    out = random_crop(x, p, generator=_gen(4))
    g = _gen(4)  # replay the offsets the function draws: dy first, then dx
    dy = torch.randint(0, 2 * p + 1, (5,), generator=g)
    dx = torch.randint(0, 2 * p + 1, (5,), generator=g)
    padded = F.pad(x, (p, p, p, p))
    for i in range(5):
        expected = padded[i, :, dy[i] : dy[i] + 6, dx[i] : dx[i] + 7]
        assert torch.equal(out[i], expected)


def test_random_crop_padding_zero_is_identity() -> None:
    x = _images()
    assert torch.equal(random_crop(x, 0, generator=_gen(0)), x)


def test_hflip_p1_flips_and_p0_keeps() -> None:
    x = _images()
    assert torch.equal(random_hflip(x, p=1.0, generator=_gen(0)), x.flip(-1))
    assert torch.equal(random_hflip(x, p=0.0, generator=_gen(0)), x)


def test_hflip_is_reproducible_and_per_image() -> None:
    x = _images(n=32)
    a = random_hflip(x, 0.5, generator=_gen(5))
    assert torch.equal(a, random_hflip(x, 0.5, generator=_gen(5)))
    flipped = [torch.equal(a[i], x[i].flip(-1)) for i in range(32)]
    kept = [torch.equal(a[i], x[i]) for i in range(32)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)


@pytest.mark.parametrize("hflip", [True, False])
def test_augment_batch(hflip: bool) -> None:
    x = _images()
    out = augment_batch(x, padding=2, hflip=hflip, generator=_gen(0))
    assert out.shape == x.shape
    assert torch.equal(out, augment_batch(x, padding=2, hflip=hflip, generator=_gen(0)))
    features = torch.rand(4, 30)
    assert augment_batch(features, padding=2, hflip=True) is features
