"""``pruneguard.scan.reference`` on the backdoored digits toy of tests/unit/conftest."""

from __future__ import annotations

import math

import torch

from pruneguard.evaluation import evaluate_accuracy
from pruneguard.scan.reference import reference_trigger_sizes, train_reference
from pruneguard.scan.reversal import TRIGGER_KINDS, ReversalConfig, reverse_trigger
from pruneguard.scan.suspect import reference_suspect

CFG = ReversalConfig(steps=150, batch_size=64)


def test_a_reference_trained_on_the_clean_split_tells_the_implanted_target_from_a_clean_class(toy, toy_build) -> None:
    model, clean, test, _ = toy
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = train_reference(toy_build, clean, seed=0)
    assert not ref.training and evaluate_accuracy(ref, test) > 0.7  # it learned the task from 238 images
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the suspect is untouched
    candidates = [0, 3]
    res = reference_trigger_sizes(ref, clean, candidates, CFG, seed=0)
    assert set(res["sizes"]) == set(TRIGGER_KINDS) and all(set(d) == {0, 3} for d in res["sizes"].values())
    # the same reversal on the reference as reference_trigger_sizes ran (same config and seed): the same size
    again = reverse_trigger(ref, clean, 3, CFG, generator=torch.Generator().manual_seed(0), kind="patch")
    assert again.mask_l1 == res["sizes"]["patch"][3]
    suspect = {
        k: [
            reverse_trigger(model, clean, c, CFG, generator=torch.Generator().manual_seed(0), kind=k).mask_l1
            if c in candidates
            else math.inf
            for c in range(10)
        ]
        for k in TRIGGER_KINDS
    }
    best, ratios = reference_suspect(candidates, suspect, res["sizes"])
    assert best == 0
    # the backdoored class costs the suspect far less than it costs the reference; a clean class about as much
    assert ratios["patch"][0] < 0.5 * ratios["patch"][3]
