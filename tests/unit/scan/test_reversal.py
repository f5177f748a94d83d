"""Neural Cleanse trigger reversal and the reversal scan, on the backdoored digits toys of tests/unit/conftest."""

from __future__ import annotations

import copy

import pytest
import torch

from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.scan.reversal import (
    SCAN_STEPS,
    ReversalConfig,
    restrict_kinds,
    reversal_scan,
    reverse_trigger,
    scan_config,
)

CFG = ReversalConfig(steps=300, batch_size=64, lr=0.1)


def test_reversal_finds_a_small_stamp_to_the_backdoor_target(toy, reversed_toy) -> None:
    model, clean, _, _ = toy
    before = copy.deepcopy(model.state_dict())
    t = reversed_toy
    assert t.target == 0 and t.success_rate >= 0.9
    assert 0 <= float(t.mask.min()) and float(t.mask.max()) <= 1 and 0 <= float(t.pattern.min()) <= 1
    # the real trigger is a 2x2 patch: the stamp that reaches the target is far smaller than the image
    assert t.mask_l1 < 0.25 * t.mask.numel()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # model untouched


def test_a_clean_class_needs_a_larger_stamp_than_the_backdoor_target(toy, reversed_toy) -> None:
    """Neural Cleanse's detection premise, on the toy: the target's stamp is the smallest."""
    model, clean, _, _ = toy
    other = reverse_trigger(model, clean, 3, CFG, generator=torch.Generator().manual_seed(0))
    assert other.mask_l1 > 1.5 * reversed_toy.mask_l1


def test_bad_input_is_refused(toy) -> None:
    model, clean, _, _ = toy
    with pytest.raises(ConfigError, match="target=12"):
        reverse_trigger(model, clean, 12, CFG)
    flat = ArrayData(torch.rand(4, 5), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ConfigError, match="images"):
        reverse_trigger(model, flat, 0, CFG)
    with pytest.raises(ConfigError, match="steps=0"):
        ReversalConfig(steps=0)
    with pytest.raises(ConfigError, match="success=0"):
        ReversalConfig(success=0)


def test_blend_reversal_finds_one_weight_and_a_weaker_blend_to_the_target(blend_toy) -> None:
    model, clean, _, _ = blend_toy
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    t = reverse_trigger(model, clean, 0, CFG, generator=gen(), kind="blend")
    assert t.kind == "blend" and t.to_dict()["kind"] == "blend" and t.mask.shape == (1, 8, 8)
    assert bool((t.mask == t.mask.flatten()[0]).all())  # one blending weight for every pixel
    assert t.success_rate >= 0.9
    other = reverse_trigger(model, clean, 3, CFG, generator=gen(), kind="blend")
    assert t.mask_l1 < 0.5 * other.mask_l1


def test_unknown_trigger_kind_is_refused(toy) -> None:
    model, clean, _, _ = toy
    with pytest.raises(ConfigError, match="kind='star'"):
        reverse_trigger(model, clean, 0, CFG, kind="star")


@pytest.mark.parametrize("which", ["toy", "blend_toy"])
def test_reversal_scan_names_the_backdoor_target(which, request) -> None:
    model, clean, _, _ = request.getfixturevalue(which)
    res = reversal_scan(model, clean, ReversalConfig(steps=80, batch_size=64), seed=0)
    assert set(res["kinds"]) == {"patch", "blend"} and res["suspected_target"] == 0
    best = res["kinds"][res["kind"]]
    assert len(best["mask_l1"]) == 10 and best["mask_l1"][0] == min(best["mask_l1"])
    assert res["anomaly_index"] == max(k["anomaly_index"] for k in res["kinds"].values()) > 1
    assert res["steps"] == 80


def test_scan_config_is_the_scans_step_count_with_the_given_batch() -> None:
    assert scan_config(64) == ReversalConfig(steps=SCAN_STEPS, batch_size=64)
    assert scan_config() == ReversalConfig(steps=SCAN_STEPS)


def test_displace_moves_pixels_by_the_flow_and_a_zero_flow_keeps_the_image() -> None:
    from pruneguard.attacks.backdoor.triggers import displace

    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(displace(x, torch.zeros(2, 8, 8)), x, atol=1e-6)
    right = torch.zeros(2, 8, 8)
    right[0] = 1.0  # every pixel samples its right-hand neighbour: the content moves one pixel left
    assert torch.allclose(displace(x, right)[..., :-1], x[..., 1:], atol=1e-6)
    assert float(displace(x, right)[..., -1].abs().max()) < 1e-5  # sampled outside the image: zeros
    with pytest.raises(ConfigError, match="flow"):
        displace(x, torch.zeros(2, 4, 4))


def test_warp_reversal_returns_a_displacement_field_it_measures(toy) -> None:
    from pruneguard.attacks.backdoor.triggers import displace
    from pruneguard.data.tensors import to_float
    from pruneguard.evaluation.predict import evaluate_asr

    model, clean, _, _ = toy
    before = copy.deepcopy(model.state_dict())
    t = reverse_trigger(model, clean, 3, CFG, generator=torch.Generator().manual_seed(0), kind="warp")
    assert t.kind == "warp" and t.flow is not None and t.flow.shape == (2, 8, 8)
    assert float(t.mask.max()) == pytest.approx(1.0) and float(t.mask.min()) >= 0 and float(t.pattern.abs().max()) == 0
    others = clean.subset(torch.nonzero(clean.y != 3).flatten())
    x = to_float(others.x)
    assert torch.equal(t.apply(x), displace(x, t.flow))
    rate = evaluate_asr(model, ArrayData(t.apply(x), others.y, others.num_classes), 3)
    assert t.success_rate == pytest.approx(rate)
    if t.success_rate >= CFG.success:  # reached: the size is the mean displacement
        assert t.to_dict()["mask_share"] == pytest.approx(float(t.flow.abs().mean()), rel=1e-4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_a_warp_that_never_reaches_the_success_rate_counts_larger_by_its_shortfall(toy) -> None:
    model, clean, _, _ = toy
    cfg = ReversalConfig(steps=2, batch_size=64, success=1.0)
    t = reverse_trigger(model, clean, 3, cfg, generator=torch.Generator().manual_seed(0), kind="warp")
    assert t.success_rate < 1.0 and t.flow is not None
    n = int((clean.y != 3).sum())
    mean = float(t.flow.abs().mean())
    assert t.to_dict()["mask_share"] == pytest.approx(mean / max(t.success_rate, 1 / n), rel=1e-4)


def test_restrict_kinds_decides_again_among_the_kinds_kept() -> None:
    def kind(target: int, anomaly: float) -> dict:
        return {"mask_l1": [1.0, 2.0], "suspected_target": target, "anomaly_index": anomaly, "anomaly_by_class": []}

    scan = {
        "kind": "warp",
        "suspected_target": 4,
        "anomaly_index": 9.0,
        "kinds": {"patch": kind(1, 1.5), "blend": kind(2, 2.5), "warp": kind(4, 9.0)},
        "steps": 10,
        "seconds": 1.0,
    }
    stamps = restrict_kinds(scan, ("patch", "blend"))
    assert (stamps["kind"], stamps["suspected_target"], stamps["anomaly_index"]) == ("blend", 2, 2.5)
    assert sorted(stamps["kinds"]) == ["blend", "patch"] and stamps["steps"] == 10
    assert scan["kind"] == "warp" and len(scan["kinds"]) == 3  # the input is left as it was
    with pytest.raises(ValueError, match="none of"):
        restrict_kinds(scan, ("noise",))
