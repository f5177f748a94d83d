"""FT-SAM: the adaptive perturbation, and that the sharpness term is what removes the toy's backdoor."""

from __future__ import annotations

import torch

from pruneguard.defenses import FTSAMConfig, defend
from pruneguard.defenses.ft_sam import sam_perturbation
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr

# measured on the BadNets toy (backdoored: ASR 0.98, acc 0.955): ASR 0.012 for seeds 0 and 1, acc 0.94 / 0.93,
# about 0.5 s; with rho 1e-4 (plain fine-tuning with smoothing) ASR 0.71, and FT (lr 0.05, 10 epochs) 0.86
TOY = FTSAMConfig(epochs=10, lr=0.03, augment=False)


def test_adaptive_perturbation_has_radius_rho_in_the_weight_scaled_norm() -> None:
    w = [torch.nn.Parameter(torch.tensor([2.0, -1.0, 0.0])), torch.nn.Parameter(torch.tensor([[0.5]]))]
    g = [torch.tensor([1.0, 1.0, 5.0]), torch.tensor([[-2.0]])]
    e = sam_perturbation(w, g, rho=0.3, adaptive=True)
    scaled = torch.cat([(ei / wi.detach().abs().clamp_min(1e-12)).flatten() for ei, wi in zip(e, w, strict=True)])
    assert abs(float(torch.linalg.vector_norm(scaled[[0, 1, 3]])) - 0.3) < 1e-6  # T^-1 e has norm rho
    assert float(e[0][2]) == 0.0  # a zero (pruned) weight is not perturbed
    # the radius of each entry grows with |w|: e = rho * |w|^2 g / ||(|w| g)||
    norm = torch.tensor([2.0, 1.0, 0.0, -1.0]).norm()
    assert torch.allclose(e[0], 0.3 * torch.tensor([4.0, 1.0, 0.0]) / norm)
    plain = sam_perturbation(w, g, rho=0.3, adaptive=False)
    assert abs(float(torch.cat([p.flatten() for p in plain]).norm()) - 0.3) < 1e-6
    assert torch.allclose(plain[0], 0.3 * g[0] / torch.cat([g[0], g[1].flatten()]).norm())


def test_lowers_the_asr_of_the_badnets_toy(toy) -> None:
    model, clean, test, trig = toy
    assert evaluate_asr(model, trig, 0) > 0.9
    purified, info = defend("ft_sam", model, clean, TOY, seed=0)
    assert evaluate_asr(purified, trig, 0) <= 0.1
    assert evaluate_accuracy(purified, test) >= evaluate_accuracy(model, test) - 0.06
    assert len(info["history"]) == TOY.epochs and info["config"]["rho"] == 2.0


def test_the_sharpness_term_does_the_work(toy) -> None:
    model, clean, _, trig = toy
    sharp, _ = defend("ft_sam", model, clean, TOY, seed=1)
    flat, _ = defend("ft_sam", model, clean, FTSAMConfig(epochs=10, lr=0.03, augment=False, rho=1e-4), seed=1)
    assert evaluate_asr(flat, trig, 0) >= 0.4
    assert evaluate_asr(sharp, trig, 0) <= evaluate_asr(flat, trig, 0) - 0.3
