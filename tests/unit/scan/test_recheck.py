"""``pruneguard.scan.finder.recheck_suspect``: the finder's evidence tests re-run on a repaired model, on the
backdoored digits toy of tests/unit/conftest."""

from __future__ import annotations

import copy
import statistics

import pytest
import torch

from pruneguard.defenses.unlearning import UnlearnConfig, unlearn_
from pruneguard.evaluation import evaluate_asr
from pruneguard.scan import finder
from pruneguard.scan.finder import recheck_suspect
from pruneguard.scan.reference import train_reference


@pytest.fixture(scope="module")
def reference(toy, toy_build) -> torch.nn.Module:
    _, clean, _, _ = toy
    return train_reference(toy_build, clean, seed=0)


def test_an_unrepaired_backdoor_is_still_found_and_the_inputs_are_untouched(toy, reference) -> None:
    model, clean, _, _ = toy
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = recheck_suspect(copy.deepcopy(model), model, clean, 0, reference=reference, batch_size=64)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    ref = res["tests"]["reference"]
    assert ref["ratios"]["repaired"] == ref["ratios"]["original"]  # the same model, the same seeded reversal
    assert ref["repaired"] == ref["original"] == min(ref["ratios"]["original"].values()) <= ref["cut"]
    assert ref["judged"] and ref["evidence"] and res["judged"] and res["evidence"]
    sens = res["tests"]["sensitivity"]
    assert sens["original"] == sens["repaired"] and sens["evidence"] == sens["judged"]
    assert set(ref["sizes"]) == {"repaired", "original", "reference"} and res["images"] == len(clean)


def test_a_model_without_the_shortcut_passes_and_an_unflagged_original_is_not_judged(toy, reference) -> None:
    model, clean, _, _ = toy
    # the reference stands for a repaired model without the backdoor: its ratio to itself is 1
    res = recheck_suspect(reference, model, clean, 0, reference=reference, batch_size=64)
    ref = res["tests"]["reference"]
    assert ref["judged"] and not ref["evidence"] and ref["repaired"] == pytest.approx(1.0)
    assert not res["tests"]["sensitivity"]["evidence"] and not res["evidence"]
    # an original that no test flags on these images: nothing can be said of the repair
    res = recheck_suspect(reference, reference, clean, 0, reference=reference, batch_size=64)
    assert not res["judged"] and not res["evidence"]
    # without a reference model only the sensitivity test runs
    assert set(recheck_suspect(model, model, clean, 0, batch_size=64)["tests"]) == {"sensitivity"}


def test_unlearning_the_reversed_trigger_removes_what_the_recheck_sees(toy, reference, reversed_toy) -> None:
    model, clean, _, triggered = toy
    repaired = copy.deepcopy(model)
    unlearn_(repaired, clean, [reversed_toy], UnlearnConfig(batch_size=64, epochs=5), seed=0)
    assert evaluate_asr(repaired, triggered, 0) < 0.2  # the backdoor is gone from the repaired model
    res = recheck_suspect(repaired, model, clean, 0, reference=reference, batch_size=64)
    ref = res["tests"]["reference"]
    assert ref["repaired"] > ref["original"] and res["judged"] and not res["evidence"]


def test_data_too_small_for_a_test_leaves_it_unjudged_with_the_reason(toy) -> None:
    model, clean, _, _ = toy
    one = clean.subset(torch.nonzero(clean.y == 3).flatten()[:1])
    res = recheck_suspect(model, model, one, 0, batch_size=64)
    sens = res["tests"]["sensitivity"]
    assert not sens["judged"] and not sens["evidence"] and "at least 2 samples" in sens["error"]
    assert not res["judged"] and not res["evidence"]


def test_the_warp_test_judges_the_suspects_warp_against_the_models_own_classes(toy, monkeypatch) -> None:
    model, clean, _, _ = toy
    res = recheck_suspect(copy.deepcopy(model), model, clean, 0, warp_cut=10.0, batch_size=64)
    warp = res["tests"]["warp"]
    sizes = warp["sizes"]["original"]
    assert len(sizes) == clean.num_classes and warp["sizes"]["repaired"] == sizes  # same model, same seeded reversal
    assert warp["repaired"] == warp["original"] == pytest.approx(sizes[0] / statistics.median(sizes))
    assert warp["judged"] and warp["evidence"] and res["evidence"]
    # the same seeded reversals again, read back instead of recomputed (20 warp reversals)
    monkeypatch.setattr(finder, "reversal_scan", lambda *a, **k: {"kinds": {"warp": {"mask_l1": sizes}}})
    tight = recheck_suspect(model, model, clean, 0, warp_cut=warp["original"] / 2, batch_size=64)["tests"]["warp"]
    assert not tight["judged"] and not tight["evidence"]  # an original whose warp is no outlier: not judged
    assert "warp" not in recheck_suspect(model, model, clean, 0, batch_size=64)["tests"]  # only where asked for
