"""The evaluation zoo's trigger families: random_patch, thin_line, faint_pattern.

Each is reproducible from its parameters (seed included), keeps images in [0, 1], has the shape it was drawn
with, and poisons like the other backdoor attacks.
"""

from __future__ import annotations

import pytest
import torch

from pruneguard.attacks import ATTACKS
from pruneguard.attacks.backdoor import FaintPattern, RandomPatch, ThinLine, line_mask, random_connected_mask
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError


def _connected(mask: torch.Tensor) -> bool:
    cells = {(int(r), int(c)) for r, c in torch.nonzero(mask)}
    todo, seen = [next(iter(cells))], set()
    while todo:
        r, c = todo.pop()
        if (r, c) in seen:
            continue
        seen.add((r, c))
        todo += [n for n in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)) if n in cells]
    return seen == cells


def _batch(n: int = 4, c: int = 1, size: int = 12) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(3))


FAMILIES = [
    RandomPatch(target_label=1, size=4, pixels=7, row=2, col=5, seed=11),
    ThinLine(target_label=1, length=6, orientation="diagonal", offset=3, start=1, seed=4),
    FaintPattern(target_label=1, alpha=0.06, grain=3, seed=9),
]


@pytest.mark.parametrize("attack", FAMILIES, ids=lambda a: a.name)
def test_trigger_is_reproducible_in_range_and_registered(attack) -> None:
    x = _batch(c=3)
    out = attack(None, x, torch.zeros(4, dtype=torch.long))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, x)
    params = {k: getattr(attack, k) for k in attack.__slots__}
    rebuilt = ATTACKS.create(attack.name, **params)  # what make_trigger does with the recorded parameters
    assert torch.equal(rebuilt(None, x, x), out)
    assert ATTACKS.meta(attack.name)["kind"] == "backdoor"
    other = ATTACKS.create(attack.name, **{**params, "seed": params["seed"] + 1})
    if attack.name != "thin_line":  # a line with its placement given draws nothing from its seed
        assert not torch.equal(other(None, x, x), out)


@pytest.mark.parametrize("attack", FAMILIES, ids=lambda a: a.name)
def test_trigger_poisons_non_target_images(attack) -> None:
    g = torch.Generator().manual_seed(0)
    data = ArrayData(torch.randint(0, 256, (80, 1, 12, 12), generator=g, dtype=torch.uint8), torch.arange(80) % 4, 4)
    res = attack.poison(data, rate=0.1, generator=torch.Generator().manual_seed(1))
    assert res.poison_indices.numel() == 6  # 10% of the 60 non-target images
    assert bool((res.data.y[res.poison_indices] == 1).all())


def test_random_patch_has_the_drawn_connected_shape_at_its_position() -> None:
    for seed in range(5):
        mask = random_connected_mask(5, 9, seed=seed)
        assert int(mask.sum()) == 9 and _connected(mask)
        assert torch.equal(mask, random_connected_mask(5, 9, seed=seed))
    assert not torch.equal(random_connected_mask(5, 9, seed=0), random_connected_mask(5, 9, seed=1))
    attack = RandomPatch(size=4, pixels=6, row=7, col=1, value=1.0, seed=2)
    x = torch.zeros(2, 1, 12, 12)
    out = attack(None, x, x)
    changed = out[0, 0] > 0
    assert int(changed.sum()) == 6
    assert torch.equal(changed[7:11, 1:5].float(), attack.mask())  # the mask, its corner at (row, col)
    drawn = RandomPatch(size=4, pixels=6, seed=2)  # no position: drawn from the seed, inside the image
    r, c = drawn.location((12, 12))
    assert 0 <= r <= 8 and 0 <= c <= 8 and drawn.location((12, 12)) == (r, c)


def test_thin_line_has_its_length_and_orientation() -> None:
    m = line_mask((10, 10), orientation="vertical", offset=8, start=2, length=5)
    assert int(m.sum()) == 5 and int(m[:, 8].sum()) == 5 and int(m[2:7, 8].sum()) == 5
    m = line_mask((10, 10), orientation="antidiagonal", offset=6, start=0, length=4)
    assert [(int(r), int(c)) for r, c in torch.nonzero(m)] == [(0, 6), (1, 5), (2, 4), (3, 3)]
    for seed in range(8):  # placement drawn from the seed always fits and is one line of `length` pixels
        line = ThinLine(length=7, seed=seed)
        assert int(line.mask((9, 9)).sum()) == 7 and torch.equal(line.mask((9, 9)), line.mask((9, 9)))
    with pytest.raises(ConfigError, match="does not fit"):
        line_mask((10, 10), orientation="horizontal", offset=0, start=6, length=5)


def test_faint_pattern_stays_within_alpha_of_the_image() -> None:
    attack = FaintPattern(alpha=0.05, grain=4, seed=1)
    x = _batch()
    out = attack(None, x, x)
    assert float((out - x).abs().max()) <= 0.05 + 1e-6
    pattern = attack.pattern((1, 12, 12))
    assert float(pattern.min()) == 0.0 and float(pattern.max()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (RandomPatch, {"pixels": 17, "size": 4}, "pixels=17"),
        (RandomPatch, {"row": -1}, "row=-1"),
        (ThinLine, {"orientation": "zigzag", "offset": 0, "start": 0}, "orientation='zigzag'"),
        (ThinLine, {"orientation": "vertical"}, "give all three"),
        (FaintPattern, {"alpha": 0.5}, "alpha=0.5"),
        (FaintPattern, {"grain": 0}, "grain=0"),
    ],
)
def test_bad_parameters_name_the_field(cls, kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        cls(**kwargs)
