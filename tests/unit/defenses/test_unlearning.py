"""Neural Cleanse unlearning of reversed triggers, its distillation and adversarial terms, bad input."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import pytest
import torch

from pruneguard.data.augment import augment_batch
from pruneguard.data.tensors import to_float
from pruneguard.defenses import unlearning
from pruneguard.defenses.unlearning import TriggerStamp, UnlearnConfig, unlearn_
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr
from pruneguard.scan.reversal import ReversalConfig, ReversedTrigger, reverse_trigger
from pruneguard.utils.modes import eval_mode

CFG = UnlearnConfig(batch_size=64, epochs=15, finetune_lr=0.02)
REVERSAL = ReversalConfig(steps=300, batch_size=64, lr=0.1)  # as the conftest's reversed_toy


@dataclass(frozen=True)
class _PlainStamp:
    """A stamp that is no reversal's result: unlearn_ needs only its target, mask and pattern."""

    target: int
    mask: torch.Tensor
    pattern: torch.Tensor


def _assert_unlearned(toy_set, trigger: ReversedTrigger) -> None:
    """The backdoor (ASR > 0.8) loses 70% of its ASR by unlearning ``trigger``; accuracy drops < 8 points."""
    model, clean, test, triggered = toy_set
    acc0, asr0 = evaluate_accuracy(model, test), evaluate_asr(model, triggered, 0)
    assert asr0 > 0.8
    tuned = copy.deepcopy(model)
    unlearn_(tuned, clean, trigger, CFG)
    assert evaluate_asr(tuned, triggered, 0) < 0.3 * asr0
    assert evaluate_accuracy(tuned, test) > acc0 - 0.08


def test_unlearning_removes_the_backdoor_and_keeps_accuracy(toy, reversed_toy) -> None:
    _assert_unlearned(toy, reversed_toy)


def test_unlearning_keeps_pruned_weights_at_zero(toy, reversed_toy) -> None:
    model, clean, _, _ = toy
    tuned = copy.deepcopy(model)
    conv = next(m for m in tuned.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight[0] = 0.0
    unlearn_(tuned, clean, reversed_toy, UnlearnConfig(epochs=1))
    assert bool((conv.weight[0] == 0).all())


def test_bad_input_is_refused() -> None:
    with pytest.raises(ConfigError, match="stamp_fraction=0"):
        UnlearnConfig(stamp_fraction=0)
    with pytest.raises(ConfigError, match="epochs=0"):
        UnlearnConfig(epochs=0)


def test_unlearning_a_reversed_blend_removes_a_blend_backdoor(blend_toy) -> None:
    model, clean, _, _ = blend_toy
    t = reverse_trigger(model, clean, 0, REVERSAL, generator=torch.Generator().manual_seed(0), kind="blend")
    _assert_unlearned(blend_toy, t)


def test_unlearning_with_two_triggers_adds_stamped_copies_of_each(toy, monkeypatch) -> None:
    model, clean, _, _ = toy
    seen = {}

    def fake_fine_tune(m, data, cfg, keep_zero=None, hook=None):
        seen["x"], seen["y"] = data.x, data.y
        return type("R", (), {"seconds": 0.0})()

    monkeypatch.setattr(unlearning, "fine_tune_", fake_fine_tune)
    h, w = clean.x.shape[-2:]
    mask_a = torch.zeros(1, h, w)
    mask_a[0, 0, 0] = 1.0
    a = ReversedTrigger(0, mask_a, torch.ones(1, h, w), 1.0, 1.0, 0.0)
    b = _PlainStamp(0, torch.full((1, 1, 1), 0.5), torch.zeros(1, h, w))  # a blend: one weight for all pixels
    assert isinstance(a, TriggerStamp) and isinstance(b, TriggerStamp)
    unlearn_(model, clean, b, UnlearnConfig(stamp_fraction=0.25))  # one stamp: one stamped share
    assert seen["x"].shape[0] == len(clean) + round(0.25 * len(clean))
    unlearn_(model, clean, [a, b], UnlearnConfig(stamp_fraction=0.25))
    n, k = len(clean), round(0.25 * len(clean))
    assert seen["x"].shape[0] == n + 2 * k
    first, second = seen["x"][n : n + k], seen["x"][n + k :]
    assert bool((first[:, 0, 0, 0] == 1.0).all())  # patch stamp: the corner pixel set to the pattern
    assert float(second.max()) <= 0.5 + 1e-6  # blend with a black pattern at weight 0.5 halves every pixel
    assert torch.equal(seen["y"][:n], clean.y)  # true labels kept


def test_unlearning_a_reversed_warp_adds_warped_copies(toy, monkeypatch) -> None:
    from pruneguard.attacks.backdoor.triggers import displace
    from pruneguard.data.tensors import to_float

    model, clean, _, _ = toy
    seen = {}

    def fake_fine_tune(m, data, cfg, keep_zero=None, hook=None):
        seen["x"] = data.x
        return type("R", (), {"seconds": 0.0})()

    monkeypatch.setattr(unlearning, "fine_tune_", fake_fine_tune)
    h, w = clean.x.shape[-2:]
    flow = torch.zeros(2, h, w)
    flow[1] = 1.0  # every pixel samples the row below it
    t = ReversedTrigger(0, torch.ones(1, h, w), torch.zeros(1, h, w), 1.0, 1.0, 0.0, "warp", flow)
    unlearn_(model, clean, t, UnlearnConfig(stamp_fraction=0.25))
    n, k = len(clean), round(0.25 * len(clean))
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:k]  # unlearn_'s draw (seed 0)
    assert torch.allclose(seen["x"][n:], displace(to_float(clean.x[pick]), flow))


def test_distill_loss_is_zero_for_equal_logits_and_matches_its_formula() -> None:
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    assert float(unlearning.distill_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)
    p, logq = torch.softmax(t / 3, 1), torch.log_softmax(s / 3, 1)
    expected = 9 * float((p * (p.log() - logq)).sum(1).mean())
    assert float(unlearning.distill_loss(s, t, 3.0)) == pytest.approx(expected, rel=1e-5)


def test_distill_hook_keeps_the_batch_and_replays_its_draws_from_its_state(toy) -> None:
    model, clean, _, _ = toy
    student = copy.deepcopy(model)
    with torch.no_grad():
        next(student.parameters()).mul_(0.5)  # the student differs from the teacher: a non-zero term
    x = torch.rand(6, *clean.x.shape[1:])
    y = torch.arange(6)
    imgs = to_float(clean.x[:20])
    hook = unlearning.DistillHook(student, model, imgs, 2.0, 2.0, torch.Generator().manual_seed(3))
    state = hook.state_dict()
    model.zero_grad(set_to_none=True)
    x2, y2, term = hook.batch(x, y)
    assert x2 is x and y2 is y and float(term.detach()) > 0
    term.backward()
    assert next(student.parameters()).grad is not None and next(model.parameters()).grad is None
    hook.load_state_dict(state)
    assert float(hook.batch(x, y)[2].detach()) == pytest.approx(float(term.detach()))  # the same clean batch again


def test_unlearning_with_distillation_stays_closer_to_the_teacher_and_still_unlearns(toy, reversed_toy) -> None:
    model, clean, test, triggered = toy
    with torch.no_grad():
        teacher_logits = model(to_float(test.x))

    def divergence(distill: float) -> float:
        tuned = copy.deepcopy(model)
        unlearn_(tuned, clean, reversed_toy, replace(CFG, distill=distill), teacher=model)
        assert evaluate_asr(tuned, triggered, 0) < 0.3 * evaluate_asr(model, triggered, 0)
        with torch.no_grad():
            return float(unlearning.distill_loss(tuned(to_float(test.x)), teacher_logits, 1.0))

    assert divergence(3.0) < divergence(0.0)


def test_distillation_needs_another_model_as_teacher(toy, reversed_toy) -> None:
    model, clean, _, _ = toy
    with pytest.raises(ConfigError, match="distill=1.0 needs a teacher"):
        unlearn_(copy.deepcopy(model), clean, reversed_toy, UnlearnConfig(distill=1.0))
    with pytest.raises(ConfigError, match="another model"):
        unlearn_(model, clean, reversed_toy, UnlearnConfig(distill=1.0), teacher=model)
    with pytest.raises(ConfigError, match="distill=-1"):
        UnlearnConfig(distill=-1)


def test_adversarial_hook_appends_targeted_copies_of_the_non_target_images_within_eps(toy) -> None:
    model, clean, _, _ = toy
    x, y = to_float(clean.x[:16]), clean.y[:16].clone()
    y[:3] = 0  # three images of the target class get no copy
    hook = unlearning.TargetedAdversarialHook(model, 0, 0.1, 5, torch.Generator().manual_seed(1))
    state = hook.state_dict()
    model.zero_grad(set_to_none=True)
    x2, y2, term = hook.batch(x, y)
    keep = torch.nonzero(y != 0).flatten()
    assert x2.shape[0] == 16 + len(keep) and torch.equal(x2[:16], x) and float(term) == 0.0
    assert torch.equal(y2[16:], y[keep])  # true labels, not the target
    adv = x2[16:]
    assert float((adv - x[keep]).abs().max()) <= 0.1 + 1e-6 and 0 <= float(adv.min()) and float(adv.max()) <= 1
    with torch.no_grad():  # the copies moved towards the target class
        before, after = (torch.log_softmax(model(v), 1)[:, 0].mean() for v in (x[keep], adv))
    assert float(after) > float(before) + 0.5
    assert all(p.grad is None for p in model.parameters())  # the model only read
    hook.load_state_dict(state)
    assert torch.equal(hook.batch(x, y)[0], x2)  # the random start replays from the state


def test_adversarial_unlearning_removes_a_patch_backdoor_without_any_reversed_trigger(toy) -> None:
    """Per-image targeted steps towards the suspect class, unlearned with true labels, find the patch's shortcut
    on their own: a plain fine-tune of the same length leaves most of it."""
    model, clean, test, triggered = toy
    cfg = replace(CFG, adv_eps=0.05)
    plain, adv = copy.deepcopy(model), copy.deepcopy(model)
    unlearn_(plain, clean, [], replace(cfg, adv_eps=0.0))
    unlearn_(adv, clean, [], cfg, target=0)
    assert evaluate_asr(plain, triggered, 0) > 0.5
    assert evaluate_asr(adv, triggered, 0) < 0.15
    assert evaluate_accuracy(adv, test) > evaluate_accuracy(model, test) - 0.03


def test_adversarial_unlearning_settings_are_checked(toy) -> None:
    model, clean, _, _ = toy
    with pytest.raises(ConfigError, match="adv_eps=1.5"):
        UnlearnConfig(adv_eps=1.5)
    with pytest.raises(ConfigError, match="adv_steps=0"):
        UnlearnConfig(adv_steps=0)
    with pytest.raises(ConfigError, match="needs a target class"):
        unlearn_(copy.deepcopy(model), clean, [], UnlearnConfig(adv_eps=0.1))


def test_recalibrated_batchnorm_statistics_are_the_clean_split_averages(toy) -> None:
    model, clean, _, _ = toy
    model = copy.deepcopy(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms
    first = norms[0]
    seen: list[torch.Tensor] = []
    handle = first.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    model.train()  # flags to be kept as they were
    momenta = [m.momentum for m in norms]
    assert unlearning.recalibrate_batchnorm_(model, clean, batch_size=50) is model
    handle.remove()
    # the first layer's input does not depend on statistics: its running mean is the average of the batch means
    batch_means = torch.stack([s.mean(dim=(0, 2, 3)) for s in seen])
    sizes = torch.tensor([len(s) for s in seen])
    assert len(seen) == -(-len(clean) // 50) and sizes.sum() == len(clean)
    assert torch.allclose(first.running_mean, batch_means.mean(0), atol=1e-5)
    assert int(first.num_batches_tracked) == len(seen)
    assert all(m.training for m in model.modules()) and [m.momentum for m in norms] == momenta


def test_recalibrated_statistics_restore_a_pruned_models_accuracy_not_its_weights(toy) -> None:
    model, clean, test, _ = toy
    pruned = copy.deepcopy(model).eval()
    conv = next(m for m in pruned.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight[: conv.out_channels // 2] = 0  # half the first layer's filters pruned: stale statistics
    weights = {k: v.clone() for k, v in pruned.state_dict().items() if "running" not in k and "batches" not in k}
    before = evaluate_accuracy(pruned, test)
    unlearning.recalibrate_batchnorm_(pruned, clean)
    after = {k: v for k, v in pruned.state_dict().items() if k in weights}
    assert all(torch.equal(weights[k], after[k]) for k in weights) and not pruned.training
    # measured: 0.47 with the dense model's statistics, 0.83 recomputed
    assert evaluate_accuracy(pruned, test) > before + 0.2


def test_distill_hook_takes_the_suppressed_class_out_of_the_teachers_targets_on_other_labels() -> None:
    torch.manual_seed(0)
    student, teacher = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    clean, labels = torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    x, y = torch.zeros(8, 4), torch.zeros(8, dtype=torch.long)
    plain = unlearning.DistillHook(student, teacher, clean, 1.0, 2.0, torch.Generator().manual_seed(5))
    hook = unlearning.DistillHook(
        student, teacher, clean, 1.0, 2.0, torch.Generator().manual_seed(5), labels=labels, suppress=0
    )
    term = hook.batch(x, y)[2]
    idx = torch.randint(8, (8,), generator=torch.Generator().manual_seed(5))  # the hook's draw
    with torch.no_grad():
        t, s = teacher(clean[idx]), student(clean[idx])
    other = labels[idx] != 0

    def expected(share: float) -> float:
        p = torch.softmax(t / 2, 1)
        p[other, 0] *= 1 - share
        p = p / p.sum(1, keepdim=True)  # a share of class 0 out, the rest renormalised, on images labelled 1 or 2
        logq = torch.log_softmax(s / 2, 1)
        return 4 * float(torch.special.xlogy(p, p).sub(p * logq).sum(1).mean())

    assert float(term.detach()) == pytest.approx(expected(1.0), rel=1e-5)
    assert float(plain.batch(x, y)[2].detach()) == pytest.approx(expected(0.0), rel=1e-5) != expected(1.0)
    half = unlearning.DistillHook(
        student,
        teacher,
        clean,
        1.0,
        2.0,
        torch.Generator().manual_seed(5),
        labels=labels,
        suppress=0,
        suppress_share=0.5,
    )
    assert float(half.batch(x, y)[2].detach()) == pytest.approx(expected(0.5), rel=1e-5)
    with pytest.raises(ConfigError, match="suppress_share=1.5"):
        unlearning.DistillHook(
            student, teacher, clean, 1, 2, torch.Generator(), labels=labels, suppress=0, suppress_share=1.5
        )
    with pytest.raises(ConfigError, match="distill_suppress=2"):
        UnlearnConfig(distill_suppress=2)
    with pytest.raises(ConfigError, match="go together"):
        unlearning.DistillHook(student, teacher, clean, 1.0, 2.0, torch.Generator(), suppress=0)
    with pytest.raises(ConfigError, match="labels has 3 entries"):
        unlearning.DistillHook(student, teacher, clean, 1.0, 2.0, torch.Generator(), labels=labels[:3], suppress=0)


def test_distill_hook_can_distil_on_cropped_and_flipped_copies_of_its_draws(toy) -> None:
    model, clean, _, _ = toy
    student = copy.deepcopy(model)
    with torch.no_grad():
        next(student.parameters()).mul_(0.5)
    x, y, imgs = torch.rand(6, *clean.x.shape[1:]), torch.arange(6), to_float(clean.x[:20])
    with eval_mode(model), eval_mode(student):
        hook = unlearning.DistillHook(student, model, imgs, 1.0, 2.0, torch.Generator().manual_seed(3), augment=True)
        term = float(hook.batch(x, y)[2].detach())
        plain = unlearning.DistillHook(student, model, imgs, 1.0, 2.0, torch.Generator().manual_seed(3))
        gen = torch.Generator().manual_seed(3)  # the hook's draws: the images, then their crops and flips
        drawn = imgs[torch.randint(20, (6,), generator=gen)]
        views = augment_batch(drawn, padding=1, hflip=True, generator=gen)
        with torch.no_grad():
            expected = float(unlearning.distill_loss(student(views), model(views), 2.0))
            on_drawn = float(unlearning.distill_loss(student(drawn), model(drawn), 2.0))
        assert not torch.equal(views, drawn) and views.shape == drawn.shape
        assert term == pytest.approx(expected, rel=1e-5)
        assert float(plain.batch(x, y)[2].detach()) == pytest.approx(on_drawn, rel=1e-5) != expected
