"""The recipes shipped with pruneguard, by name (``purify --recipe NAME``).

- ``paper``: ANP exactly as published (Wu & Wang, NeurIPS 2021): untargeted perturbations, eps 0.4, alpha 0.2,
  2000 iterations, crop/flip of the clean batches, prune masks <= 0.2, no repair, no guard, every clean image for
  ANP. Kept to reproduce the paper's method.
- ``default``: the best recipe measured: the class the scans name, judged by a reference model (evidence: a
  reversed patch, blend or smooth warp whose size on the model over its size on the reference is at most 0.382
  times the median class's, the cut chosen on 131 development models for what a flag leads to: a repair aimed at
  the target of a backdoor, not at a clean model or another class; up to 0.558 where the neuron-sensitivity scan is
  suspicious and names the same class, the band chosen the same way on 159),
  targeted ANP (1000 iterations, no crop/flip), the pruning capped by the accuracy guard and where the validation
  outputs diverge more than 0.02 nats (mean KL) from the original's, equal masks taken in the order ANP drove them
  down, then up to four rounds of reversing patch and blend triggers (and a warp, where a warp was the evidence)
  to that class and unlearning them while
  distilling the recalibrated pruned model (suppression 0.75, cropped/flipped images), each round judged by the
  guard against the model it started from (scaled back if it costs too much), an undone round run again at a
  third and then a ninth of the learning rate (which the later rounds keep), and only an undone round at a ninth
  ending the repair; where nothing of the repair fits after the pruning, the repair again from the original model
  (the pruning undone); 20% of
  the clean data held out for the guard (2 points, and at least 60% of the validation images the original assigns
  to the suspected class kept in it); a model without evidence of a backdoor is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from pruneguard.recipes.schema import ANPStep, Recipe, RepairStep, SelectStep, SuspectStep
from pruneguard.registry import Registry

__all__ = ["RECIPES", "get_recipe", "DEFAULT_RECIPE"]

RECIPES: Registry[Callable[[], Recipe]] = Registry("recipe")
DEFAULT_RECIPE = "default"


@RECIPES.register("paper", summary="ANP as published: threshold 0.2, no repair, no guard")
def paper() -> Recipe:
    return Recipe(
        name="paper",
        description="Adversarial Neuron Pruning as published (NeurIPS 2021): eps 0.4, alpha 0.2, 2000 iterations, "
        "prune masks <= 0.2; no repair and no accuracy guard.",
        validation_fraction=0.0,
        max_acc_drop=None,
        suspect=SuspectStep(method="none", require_evidence=False),
        anp=ANPStep(),
        select=SelectStep(rule="threshold", threshold=0.2, capped=False),
        repair=RepairStep(method="none"),
    )


@RECIPES.register(
    "default",
    summary="suspect against a reference model → targeted ANP (capped by accuracy and divergence) → up to 4 "
    "guarded rounds of unlearning + distillation; unchanged if no evidence",
)
def default() -> Recipe:
    return Recipe(
        name="default",
        description="Suspect the class whose reversed trigger (patch, blend or warp), against a reference model "
        "trained on the clean data, stands out from the other classes' (at most 0.382 times the median class's ratio,"
        " or 0.558 where the neuron-sensitivity scan names the same class; no evidence: model unchanged), targeted "
        "ANP, pruning capped by the validation guard and at 0.02 "
        "nats of divergence from the original's validation outputs (ties in ANP's order), up to four rounds "
        "of patch+blend trigger unlearning (and the warp where a warp was the evidence) with distillation of "
        "the recalibrated pruned model, each round judged by the guard, an undone round run again at a third "
        "and a ninth of the learning rate (only an undone round at a ninth ends the repair), and where nothing of "
        "the repair fits after the pruning, the repair again without it; 20% of the clean"
        " data validates, max drop 2 points, at least 60% of the validation images the original assigns to "
        "the suspected class kept in it.",
        validation_fraction=0.2,
        max_acc_drop=0.02,
        min_suspect_kept=0.6,
        suspect=SuspectStep(
            method="vote",
            require_evidence=True,
            evidence="relative",
            relative_cut=0.382,
            corroborated_cut=0.558,
            sensitivity_evidence=False,
            warp=True,
        ),
        anp=ANPStep(iterations=1000, augment=False, targeted=True),
        select=SelectStep(rule="threshold", threshold=0.2, capped=True, max_kl=0.02, tiebreak=True),
        repair=RepairStep(
            method="unlearn",
            trigger="auto",
            rounds=4,
            epochs=5,
            lr=0.01,
            distill=3.0,
            teacher="recalibrated",
            suppress=0.75,
            distill_augment=True,
            retries=2,
            guard="backoff",
            unpruned_fallback=True,
        ),
    )


def get_recipe(name: str) -> Recipe:
    """The shipped recipe ``name`` (an unknown name lists the accepted ones)."""
    return RECIPES.get(name)()
