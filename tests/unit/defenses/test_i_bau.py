"""I-BAU: the fixed-point hypergradient equals the implicit-function formula; the unlearning removes the backdoor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, jacrev

from pruneguard.defenses import IBAUConfig, defend
from pruneguard.defenses.i_bau import implicit_hypergradient, universal_perturbation
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr

# measured on the BadNets toy (backdoored: ASR 0.98, acc 0.955): ASR 0.0 for seeds 0 and 1, acc 0.85 / 0.83,
# under 1 s; with the authors' lr (1e-4) the tiny toy keeps ASR 0.78 after 5 rounds
TOY = IBAUConfig(rounds=3, lr=1e-3)


def test_hypergradient_matches_the_implicit_function_theorem() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    params = list(model.parameters())
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 1, 0, 1])
    d = 0.3 * torch.randn(1, 1, 2, 2)
    mask = torch.tensor([True, False, True, False, False])
    config = IBAUConfig(fixed_point_iters=100, fp_step=0.1, reg=2.0)  # psi strongly convex: Phi contracts
    got = implicit_hypergradient(model, params, d, x, y, config, mask)
    names = [n for n, _ in model.named_parameters()]

    def phi(dd: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        state = dict(zip(names, ps, strict=True))
        g = torch.func.grad(lambda z: -F.cross_entropy(functional_call(model, state, (x + z,)), y) + 2.0 * (z**2).sum())
        return (dd - 0.1 * g(dd)).flatten()

    def outer(dd: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        z = mask[:, None, None, None].float() * dd
        return F.cross_entropy(functional_call(model, dict(zip(names, ps, strict=True)), (x + z,)), y)

    jac = jacrev(phi, argnums=tuple(range(len(params) + 1)))(d, *params)
    grads = jacrev(outer, argnums=tuple(range(len(params) + 1)))(d, *params)
    phi_d = jac[0].reshape(4, 4)
    v = torch.linalg.solve(torch.eye(4) - phi_d.T, grads[0].flatten())
    for p, g, j, mine in zip(params, grads[1:], jac[1:], got, strict=True):
        expected = g + torch.einsum("i,i...->...", v, j)
        assert mine.shape == p.shape and torch.allclose(mine, expected, atol=1e-5)


def test_universal_perturbation_is_one_pattern_in_the_l2_ball_and_finds_the_backdoor(toy) -> None:
    model, clean, _, _ = toy
    config = IBAUConfig()
    d = universal_perturbation(model, clean, config, torch.Generator().manual_seed(0))
    assert d.shape == (1, 1, 8, 8) and float(d.norm()) <= config.eps + 1e-5
    with torch.no_grad():
        # measured: 100% of the clean images go to the backdoor's target 0 (loss 0.25 -> 7.7)
        assert float((model(clean.float_x() + d).argmax(1) == 0).float().mean()) >= 0.9
    free = universal_perturbation(model, clean, IBAUConfig(eps=None), torch.Generator().manual_seed(0))
    assert float(free.norm()) > 10 * config.eps  # the weak L2 penalty alone does not bound it


def test_lowers_the_asr_of_the_badnets_toy(toy) -> None:
    model, clean, test, trig = toy
    purified, info = defend("i_bau", model, clean, TOY, seed=0)
    assert evaluate_asr(purified, trig, 0) <= 0.1
    assert evaluate_accuracy(purified, test) >= evaluate_accuracy(model, test) - 0.2
    assert len(info["history"]) == TOY.rounds and all(h["norm"] <= TOY.eps + 1e-5 for h in info["history"])
