"""SAU: shared adversarial examples stay in the budget and become shared; the unlearning removes the backdoor."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pruneguard.defenses import SAUConfig, defend
from pruneguard.defenses.sau import shared_adversarial_loss, shared_pgd
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr

# measured on the BadNets toy (backdoored: ASR 0.98, acc 0.955): ASR 0.15 / 0.16 for seeds 0 / 1, acc 0.94,
# about 2 s; the authors' lr (1e-4) moves the tiny toy too little in 40 steps, hence 5e-3
TOY = SAUConfig(rounds=10, lr=5e-3)


def test_shared_pgd_stays_in_the_budget_and_finds_shared_examples(toy) -> None:
    model, clean, _, _ = toy
    x, y = clean.float_x()[:64], clean.y[:64]
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    for config in (SAUConfig(), SAUConfig(start="random", eps=0.1, step_size=0.05, steps=3)):
        d = shared_pgd(model, model, x, y, config, generator=torch.Generator().manual_seed(0))
        assert d.shape == x.shape and float(d.abs().max()) <= config.eps + 1e-6
        assert float((x + d).min()) >= 0.0 and float((x + d).max()) <= 1.0
    d = shared_pgd(model, other, x, y, SAUConfig(steps=10, step_size=0.05))
    with torch.no_grad():
        start = (x + 0.2).clamp(0, 1)
        agree_start = (model(start).argmax(1) == other(start).argmax(1)).float().mean()
        agree = (model(x + d).argmax(1) == other(x + d).argmax(1)).float().mean()
    assert float(agree) > float(agree_start)  # the JS term pulls the two models to the same class


def test_shared_adversarial_loss() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    k0 = torch.tensor([0, 0, 1])
    fooled = torch.tensor([True, False, True])
    p = F.softmax(logits, 1)
    expected = -(torch.log(1 - p[0, 0]) + torch.log(1 - p[2, 1])) / 3
    assert torch.allclose(shared_adversarial_loss(logits, k0, fooled), expected)
    assert float(shared_adversarial_loss(logits, k0, torch.zeros(3, dtype=torch.bool))) == 0.0


def test_lowers_the_asr_of_the_badnets_toy(toy) -> None:
    model, clean, test, trig = toy
    purified, info = defend("sau", model, clean, TOY, seed=0)
    assert evaluate_asr(purified, trig, 0) <= 0.35
    assert evaluate_accuracy(purified, test) >= evaluate_accuracy(model, test) - 0.06
    assert len(info["history"]) == TOY.rounds and info["history"][-1]["sar"] < info["history"][0]["sar"]
