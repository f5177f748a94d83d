"""What a purification recipe is: a validated, serialisable description of its steps.

suspect (which class a backdoor would send images to, and whether there is evidence of one) → ANP (a mask per
neuron learned under adversarial neuron perturbations) → selection (which neurons to prune) → repair (fine-tune or
unlearn on the defender's clean data) → guard (accuracy on a validation part of the clean data that no step
trained on). The executor is :func:`pruneguard.workflows.purify.purify`; presets live in
:mod:`pruneguard.recipes.presets`.

Errors name the field by its dotted path in the recipe (``anp.eps``), which is also what ``--set`` takes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

__all__ = ["Recipe", "SuspectStep", "ANPStep", "SelectStep", "RepairStep"]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # fields added after results were kept under the hash of their recipe: written only when they differ from
    # their default, so that a recipe that leaves them alone serialises (and hashes) as it did before them
    _LATER_FIELDS: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in self._LATER_FIELDS:
            if name in data and data[name] == type(self).model_fields[name].default:
                del data[name]
        return data


class SuspectStep(_Step):
    """Find the class a backdoor targets, and decide whether there is evidence of a backdoor at all.

    ``method``: ``none`` (no scan; ANP untargeted unless ``target`` is given), ``sensitivity`` (the
    neuron-sensitivity scan), ``reversal`` (Neural Cleanse: the class a reversed patch or blend trigger reaches
    most easily) or ``vote`` (the classes those three voices name, judged by a reference model trained on the
    clean data: see :mod:`pruneguard.scan.finder`). ``target`` names the class outright and skips the scans.

    Evidence (with ``require_evidence``; a model without it is returned unchanged): the reference model trained on
    the clean data alone says so (a backdoor is a shortcut that a model of the same architecture and data does
    not have), or, with ``sensitivity_evidence``, the sensitivity scan's verdict is "suspicious". ``evidence``
    picks how the reference decides: ``ratio``, the suspected class's reversed trigger on the model at most
    ``reference_ratio`` times the size of the same trigger on the reference; ``relative``, that ratio (reference
    reversed to every class, the smallest class suspected) at most ``relative_cut`` times the median class's.
    ``warp``: the reversal also reverses a smooth warp to every class, on the model and on the reference (a third
    kind beside the patch and the blend: WaNet's trigger is a warp, which no stamp reproduces).
    ``corroborated_cut`` (``relative`` only): a measure above ``relative_cut`` but at most this is evidence too
    when the sensitivity scan, a test of another kind, is "suspicious" and names the same class (a dynamic
    trigger, as the input-aware attack's, is only partly reproduced by a stamp; None: no such band). Like
    ``relative_cut`` it has no effect under the other rules, and a band at or under the cut adds nothing.
    """

    _LATER_FIELDS = ("evidence", "relative_cut", "sensitivity_evidence", "warp", "corroborated_cut")

    method: Literal["none", "sensitivity", "reversal", "vote"] = "vote"
    target: int | None = Field(None, ge=0)
    require_evidence: bool = True
    reference_ratio: float = Field(0.41, gt=0.0, le=1.0, allow_inf_nan=False)
    evidence: Literal["ratio", "relative"] = "ratio"
    relative_cut: float = Field(0.5, gt=0.0, le=1.0, allow_inf_nan=False)
    sensitivity_evidence: bool = True
    warp: bool = False
    corroborated_cut: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _checks(self) -> SuspectStep:
        if self.require_evidence and self.method != "vote" and self.target is None:
            raise ValueError(
                f"suspect.require_evidence=true needs suspect.method=vote (the reference check); got "
                f"suspect.method={self.method}: set suspect.require_evidence=false"
            )
        return self


class ANPStep(_Step):
    """Adversarial Neuron Pruning's mask learning (Wu & Wang, NeurIPS 2021); the defaults are the paper's.

    ``targeted``: the perturbation pushes clean images of other classes towards the suspected class instead of
    maximising the loss (needs a suspect). ``clip_noise`` projects the perturbation to the eps-ball (the
    reference code does not); ``fast`` takes the first ascent step from the natural pass's gradient (two passes
    per iteration instead of three).
    """

    enabled: bool = True
    eps: float = Field(0.4, ge=0.0, le=1.0, allow_inf_nan=False)
    steps: int = Field(1, ge=1)
    alpha: float = Field(0.2, ge=0.0, le=1.0, allow_inf_nan=False)
    iterations: int = Field(2000, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(0.2, gt=0.0, allow_inf_nan=False)
    clip_noise: bool = False
    augment: bool = True
    targeted: bool = False
    fast: bool = False


class SelectStep(_Step):
    """Which neurons to prune from ANP's masks: those with a mask <= ``threshold`` (the paper: 0.2), the
    ``count`` smallest, or the smallest ``fraction``; never past the recipe's accuracy guard on the validation
    data (``capped``), nor past ``max_kl``: the mean KL divergence (nats) of the pruned model's outputs on the
    validation images from the original's. The accuracy of a hundred-odd images moves in steps of about a point
    and misses pruning damage that this continuous measure sees. Equal masks are ordered by their mean over ANP's
    iterations (``tiebreak``: the neuron driven down first goes first) or else by layer."""

    rule: Literal["threshold", "count", "fraction"] = "threshold"
    threshold: float = Field(0.2, ge=0.0, le=1.0, allow_inf_nan=False)
    count: int = Field(0, ge=0)
    fraction: float = Field(0.0, ge=0.0, lt=1.0, allow_inf_nan=False)
    capped: bool = True
    max_kl: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    tiebreak: bool = False

    _LATER_FIELDS = ("max_kl", "tiebreak")


class RepairStep(_Step):
    """What repairs the pruned model on the clean data.

    ``method``: ``none``; ``finetune`` (``epochs`` at ``lr``, pruned neurons kept at zero); ``unlearn`` (Neural
    Cleanse's mitigation: triggers reversed to the suspected class on the pruned model, ``trigger`` patch, blend,
    ``both`` (patch and blend), ``all`` (patch, blend and a smooth warp) or ``auto`` (patch and blend, and the warp
    where a warp decided the suspect step's evidence), unlearned with true labels in
    ``rounds`` rounds of ``epochs``, distilling the pruned model on clean images with weight ``distill``; the
    ``teacher`` is the pruned model as it is or ``recalibrated`` (BatchNorm statistics recomputed on the clean
    data); ``suppress`` takes that share of the teacher's suspected-class
    probability out on other classes' images; ``distill_augment`` distils on cropped/flipped copies;
    ``adv_eps`` > 0 adds targeted PGD copies towards the suspect with true labels). When nothing of the repair
    fits the recipe's guard (not even scaled back), it runs again from the pruned model at a third of the
    learning rate, up to ``retries`` times: a learning rate that suits networks with BatchNorm can wreck one
    without, and the straight line back to the pruned model does not pass through working models there.

    ``guard``: where the recipe's guard judges an unlearning repair: at its ``end`` (a repair that does
    not fit is scaled back as a whole, every round with it), or after each ``round`` (a round that does not fit
    is scaled back towards the model the round started from, and an undone round ends the repair: what the
    earlier rounds removed stays removed), or ``backoff``: judged after each round likewise, but an undone round
    is run again at a third of the learning rate, which the later rounds keep (at most ``retries`` times in all;
    the repair is not run again from the pruned model), and only an undone round at the lowest rate ends the
    repair. A fine-tune is one round: all three judge its end.

    ``unpruned_fallback``: where nothing of the repair fits the guard after a pruning (which took its share of the
    guard's budget), the repair runs again from the original model, without the pruning; kept only where
    something of it fits, else the model stays as the pruning left it.
    """

    method: Literal["none", "finetune", "unlearn"] = "none"
    epochs: int = Field(5, ge=1)
    lr: float = Field(0.01, gt=0.0, allow_inf_nan=False)
    trigger: Literal["patch", "blend", "both", "all", "auto"] = "both"
    rounds: int = Field(1, ge=1)
    reversal_steps: int = Field(400, ge=1)
    distill: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    teacher: Literal["pruned", "recalibrated"] = "pruned"
    suppress: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    distill_augment: bool = False
    adv_eps: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    retries: int = Field(0, ge=0, le=5)
    guard: Literal["end", "round", "backoff"] = "end"
    unpruned_fallback: bool = False

    _LATER_FIELDS = ("retries", "guard", "unpruned_fallback")

    @model_validator(mode="after")
    def _checks(self) -> RepairStep:
        if self.distill == 0 and (self.teacher != "pruned" or self.suppress > 0 or self.distill_augment):
            raise ValueError(
                f"repair.teacher={self.teacher} / repair.suppress={self.suppress} / repair.distill_augment="
                f"{self.distill_augment} shape the distillation; they need repair.distill > 0"
            )
        return self


class Recipe(_Step):
    """A purification recipe: its steps, and the guard that keeps it from costing accuracy.

    ``validation_fraction`` of the clean data (stratified) is set aside before any step runs: no step trains on
    it, and it alone judges accuracy (the pruning cap, the repair's rollback, the report's "validation accuracy").
    ``max_acc_drop``: no step may leave the model more than this below the original's validation accuracy (None:
    no guard, as ANP was published). A repair that costs more is weakened (its weight change scaled back
    towards the pruned model) until it fits; if nothing fits, retried at a lower learning rate
    (``repair.retries``) or undone.

    ``min_suspect_kept``: the repair must also keep at least this share of the validation images that the original
    model assigns to the suspected class in that class (None: not checked). Removing a backdoor takes away the
    trigger's shortcut to its target, not the target's own images; unlearning a class that carries no backdoor (a
    clean model, or the wrong class suspected) takes them away, and does so far more visibly on 120 images than it
    lowers their accuracy. Judged like the accuracy: a repair that keeps fewer is scaled back or undone.

    ``unguarded_repair``: where one validation image weighs more than ``max_acc_drop`` (fewer than
    ``1 / max_acc_drop`` images: under 50 at 2 points), a drop past the limit can read as no drop at all, so the
    guard cannot hold it. By default no step then runs: the model is returned unchanged with a failed verdict (a
    backdoor suspected and not removed). ``true`` repairs anyway, and the verdict says the limit was not held.
    """

    _LATER_FIELDS = ("min_suspect_kept", "unguarded_repair")

    name: str = "custom"
    description: str = ""
    validation_fraction: float = Field(0.2, ge=0.0, lt=1.0, allow_inf_nan=False)
    max_acc_drop: float | None = Field(0.02, ge=0.0, lt=1.0, allow_inf_nan=False)
    min_suspect_kept: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    unguarded_repair: bool = False
    suspect: SuspectStep = SuspectStep()
    anp: ANPStep = ANPStep()
    select: SelectStep = SelectStep()
    repair: RepairStep = RepairStep()

    @model_validator(mode="after")
    def _checks(self) -> Recipe:
        if self.max_acc_drop is not None and self.validation_fraction == 0:
            raise ValueError(
                f"max_acc_drop={self.max_acc_drop} is judged on validation data; it needs validation_fraction > 0 "
                "(or max_acc_drop: null, no guard)"
            )
        if self.min_suspect_kept is not None and self.validation_fraction == 0:
            raise ValueError(
                f"min_suspect_kept={self.min_suspect_kept} is judged on validation data; it needs "
                "validation_fraction > 0 (or min_suspect_kept: null)"
            )
        if self.select.max_kl is not None and self.validation_fraction == 0:
            raise ValueError(
                f"select.max_kl={self.select.max_kl} is judged on validation data; it needs validation_fraction > 0 "
                "(or select.max_kl: null)"
            )
        if self.anp.targeted and self.suspect.method == "none" and self.suspect.target is None:
            raise ValueError(
                "anp.targeted=true needs a suspected class: suspect.method other than none, or suspect.target"
            )
        if self.repair.method == "unlearn" and self.suspect.method == "none" and self.suspect.target is None:
            raise ValueError(
                "repair.method=unlearn reverses a trigger to the suspected class: it needs suspect.method "
                "other than none, or suspect.target"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
