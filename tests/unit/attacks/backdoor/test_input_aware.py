"""Input-aware dynamic backdoor: the generator, joint training (backdoor + cross-trigger modes), poisoning."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

import pytest
import torch
from torch import nn

from pruneguard.attacks import ATTACKS
from pruneguard.attacks.backdoor import InputAware, InputAwareGenerator, train_input_aware, triggered_eval_set
from pruneguard.attacks.backdoor.input_aware import JointTrigger, density_excess, diversity_loss
from pruneguard.data.datasets import load_dataset
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr
from pruneguard.models import create_model
from pruneguard.models.fit import TrainConfig
from pruneguard.training.train import train_model


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[ArrayData, ArrayData]:
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes=10, input_shape=(1, 8, 8), mean=(0.3,), std=(0.4,), width=0.5)


def joint(data: ArrayData, seed: int = 0) -> tuple[nn.Module, InputAwareGenerator]:
    model = tiny_classifier()
    net = train_input_aware(
        model,
        data,
        target_label=0,
        epochs=8,  # ASR of its own trigger after 4 / 6 / 8 epochs: 0.47 / 0.56 / 0.74 on a 2-core x86 CPU
        mask_epochs=1,
        batch_size=32,
        lr=0.05,
        hidden=8,
        mask_density=0.1,  # 6 of the 64 pixels of a digits image (the default 3.2% is 2 pixels)
        generator=torch.Generator().manual_seed(seed),
    )
    return model, net


@pytest.fixture(scope="module")
def trained(digits) -> tuple[nn.Module, InputAwareGenerator]:
    return joint(digits[0].subset(torch.arange(800)))


def test_generator_shapes_and_ranges() -> None:
    torch.manual_seed(0)
    net = InputAwareGenerator(3, hidden=4).eval()
    x = torch.rand(5, 3, 7, 9)
    with torch.no_grad():
        p, m = net.patterns(x), net.masks(x)
    assert p.shape == x.shape and m.shape == (5, 1, 7, 9)
    for t in (p, m, x + (p - x) * m):
        assert float(t.min()) >= 0 and float(t.max()) <= 1
        assert torch.allclose(net(x), x + (p - x) * m)
        assert torch.allclose(net(x, x.flip(0)), x + (net.patterns(x.flip(0)) - x) * net.masks(x.flip(0)))


def test_diversity_loss_is_input_distance_over_pattern_distance() -> None:
    x1, x2 = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    g1, g2 = torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)
    assert float(diversity_loss(x1, x2, g1, g2)) == pytest.approx(2.0, rel=1e-5)


def test_joint_training_learns_dynamic_triggers_and_cross_mode(trained, digits) -> None:
    model, net = trained
    _, test = digits
    keep = test.y != 0
    x, y = test.float_x()[keep], test.y[keep]
    attack = InputAware(target_label=0, trigger_net=net)
    with torch.no_grad():
        asr = float((model(attack(None, x, y)).argmax(1) == 0).float().mean())
        cross = float((model(attack(None, x, y, source=x.roll(1, 0))).argmax(1) == y).float().mean())
        clean_to_target = float((model(x).argmax(1) == 0).float().mean())
        patterns = net.patterns(x)
    assert evaluate_accuracy(model, test) > 0.85
    assert asr > 0.6 and asr > clean_to_target + 0.5  # its own trigger flips the image to the target
    assert cross > 0.4  # a trigger made for another image often does not (0.15 when trained without cross mode)
    assert float((patterns[0] - patterns[1]).abs().mean()) > 0.01  # one trigger per image
    assert not model.training and not net.training


def test_training_is_reproducible_with_a_seeded_generator(digits) -> None:
    small = digits[0].subset(torch.arange(96))
    (m1, n1), (m2, n2) = joint(small), joint(small)
    x = small.float_x()[:8]
    with torch.no_grad():
        assert torch.equal(n1(x), n2(x)) and torch.equal(m1(x), m2(x))


def test_call_needs_a_trained_generator_and_keeps_dtype(trained) -> None:
    with pytest.raises(ConfigError, match="trigger_net"):
        InputAware()(None, torch.rand(2, 1, 8, 8), torch.zeros(2))
    attack = InputAware(target_label=0, trigger_net=trained[1])
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    out = attack(None, x, torch.zeros(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert attack == InputAware(target_label=0)  # the generator is state, not a hyperparameter


def test_poison_with_a_trained_generator(trained, digits) -> None:
    train, _ = digits
    attack = InputAware(target_label=4, cross_ratio=1.0, trigger_net=trained[1])
    res = attack.poison(train, rate=0.1, generator=torch.Generator().manual_seed(0))
    bd = res.poison_indices
    assert bd.numel() == int(0.1 * int((train.y != 4).sum()))
    assert bool((train.y[bd] != 4).all()) and bool((res.data.y[bd] == 4).all())
    other = torch.ones(len(train), dtype=torch.bool)
    other[bd] = False
    assert torch.equal(res.data.y[other], train.y[other])  # cross mode keeps labels
    changed = int(((res.data.x != train.x).flatten(1).any(1) & other).sum())
    assert bd.numel() // 2 <= changed <= bd.numel()  # cross_ratio=1: as many cross-trigger images
    again = attack.poison(train, rate=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.data.x, res.data.x) and res.data.x.dtype == torch.uint8


def test_registry_and_validation() -> None:
    attack = ATTACKS.create("input_aware", target_label=2)
    assert isinstance(attack, InputAware) and attack.trigger_net_ is None
    with pytest.raises(ConfigError, match="cross_ratio"):
        InputAware(cross_ratio=-1)
    with pytest.raises(ConfigError, match="trigger_net"):
        InputAware(trigger_net=nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="cross_rate"):
        train_input_aware(
            tiny_classifier(), load_dataset("digits", "test"), target_label=0, epochs=1, rate=0.5, cross_rate=0.5
        )


def test_poison_trains_the_generator_itself_and_a_fresh_model_learns_it(digits) -> None:
    train, test = digits
    attack = InputAware(target_label=0, surrogate_epochs=3, mask_epochs=1, hidden=8)
    poisoned = attack.poison(train, rate=0.1, generator=torch.Generator().manual_seed(0))
    assert attack.trigger_net_ is not None  # stored on the attack for the test-time trigger
    assert "trigger_net" not in {f.name for f in fields(attack)}  # learned state: the JSON record stays valid
    model = tiny_classifier()
    train_model(model, poisoned.data, TrainConfig(epochs=5, batch_size=64, lr=0.05, crop_padding=0, hflip=False))
    asr = evaluate_asr(model, triggered_eval_set(test, lambda x, y: attack(None, x, y), 0), 0)
    assert evaluate_accuracy(model, test) > 0.85
    assert asr > 0.4  # chance: about 0.1


def test_diversity_loss_gradient_stays_finite_for_identical_outputs() -> None:
    # a saturated tanh makes two masks exactly equal; the square root must not turn that into NaN gradients
    x1, x2 = torch.rand(4, 1, 6, 6), torch.rand(4, 1, 6, 6)
    g = torch.zeros(4, 1, 6, 6, requires_grad=True)
    loss = diversity_loss(x1, x2, g, g.detach().clone())
    loss.backward()
    assert torch.isfinite(loss) and g.grad is not None and bool(torch.isfinite(g.grad).all())


def test_joint_hook_batch_poisons_a_share_crosses_the_next_and_keeps_the_rest(digits) -> None:
    torch.manual_seed(0)
    net = InputAwareGenerator(1, hidden=4)
    with torch.no_grad():  # masks fully on, so every trigger changes its image
        net.mask_net.decoder[-1].bias.fill_(5.0)
    hook = JointTrigger(net, target_label=3, rate=0.25, cross_rate=0.25)
    x, y = digits[0].float_x()[:16], digits[0].y[:16]
    inputs, labels, extra = hook.batch(x, y)
    assert inputs.shape == x.shape and labels.tolist() == [3] * 4 + y[4:].tolist()
    with torch.no_grad():
        own = x[:4] + (net.patterns(x[:4]) - x[:4]) * net.masks(x[:4])
        src = x.roll(1, 0)[4:8]
        crossed = x[4:8] + (net.patterns(src) - x[4:8]) * net.masks(src)
    assert torch.allclose(inputs[:4], own, atol=1e-6) and torch.allclose(inputs[4:8], crossed, atol=1e-6)
    assert torch.equal(inputs[8:], x[8:]) and not torch.equal(inputs[:8], x[:8])
    assert extra.dim() == 0 and bool(torch.isfinite(extra)) and extra.requires_grad
    assert not any(p.requires_grad for p in net.mask_net.parameters())  # the mask network stays frozen
    before = [p.detach().clone() for p in net.pattern_net.parameters()]
    hook.zero_grad()
    extra.backward()
    hook.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.pattern_net.parameters(), strict=True))


def test_joint_training_resumes_with_the_generator_bit_identical(digits, tmp_path) -> None:
    small = digits[0].subset(torch.arange(128))
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, crop_padding=0, hflip=False, seed=3)

    def run(stop_after=None, checkpoint=None) -> tuple[nn.Module, InputAware, list]:
        attack = InputAware(target_label=0, mask_epochs=1, hidden=4)
        model = tiny_classifier()
        hook = attack.joint_hook(small, rate=0.1)
        res = train_model(model, small, cfg, checkpoint=checkpoint, stop_after=stop_after, hook=hook)
        return model, attack, res.history

    full_model, full_attack, full_history = run()
    ckpt = tmp_path / "ckpt.pt"
    run(stop_after=1, checkpoint=ckpt)  # the process "dies" after epoch 1
    assert "hook" in torch.load(ckpt, weights_only=True)
    model, attack, _ = run(checkpoint=ckpt)
    x = small.float_x()[:8]
    assert torch.equal(full_attack(None, x, small.y[:8]), attack(None, x, small.y[:8]))
    for a, b in zip(full_model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a checkpoint written without a hook is not resumed by a run with one (and the other way round)
    plain = tmp_path / "plain.pt"
    plain_history = train_model(tiny_classifier(), small, cfg, checkpoint=plain, stop_after=1).history
    hooked = InputAware(target_label=0, mask_epochs=1, hidden=4).joint_hook(small, rate=0.1)
    res = train_model(tiny_classifier(), small, cfg, checkpoint=plain, hook=hooked)
    assert res.history == full_history and res.history[0] != plain_history[0]  # trained from the start


def test_mode_is_validated() -> None:
    assert InputAware().mode == "joint"
    with pytest.raises(ConfigError, match="mode='static'"):
        InputAware(mode="static")


def test_density_excess_charges_only_the_coverage_above_the_density() -> None:
    masks = torch.zeros(2, 1, 10, 10)
    masks[0, 0, :1] = 1.0  # covers 10% of its image
    masks[1, 0, 0, :2] = 1.0  # covers 2%: under the density, free
    assert float(density_excess(masks, 0.032)) == pytest.approx((0.10 - 0.032) / 2)
    assert float(density_excess(masks[1:], 0.032)) == 0.0
