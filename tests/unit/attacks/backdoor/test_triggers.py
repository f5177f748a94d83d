"""The pure trigger functions of ``pruneguard.attacks.backdoor.triggers``."""

from __future__ import annotations

import torch

from pruneguard.attacks.backdoor.triggers import stamp


def test_stamp_is_the_convex_mix_of_image_and_pattern() -> None:
    x, p = torch.rand(3, 1, 4, 4), torch.rand(1, 4, 4)
    m = torch.zeros(1, 4, 4)
    m[0, 0, 0] = 1.0
    m[0, 1, 1] = 0.25
    out = stamp(x, m, p)
    assert torch.equal(out[:, :, 2:, 2:], x[:, :, 2:, 2:])
    assert torch.allclose(out[:, 0, 0, 0], p[0, 0, 0].expand(3))
    assert torch.allclose(out[:, 0, 1, 1], 0.75 * x[:, 0, 1, 1] + 0.25 * p[0, 1, 1])
