"""The purify job: run a recipe on a possibly backdoored model and judge it on validation data.

The defender's clean data is split once: the recipe's steps (scans, ANP, repair) use the first part, and the
validation part, which no step trains on, judges accuracy (the pruning cap, the repair's guard, the verdict).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save
from torch import Tensor, nn

from pruneguard.config import PurifyConfig
from pruneguard.data.splits import validation_split
from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.defenses.fine_tune import fine_tune_, zero_masks
from pruneguard.defenses.guard import weaken_to_fit
from pruneguard.defenses.unlearning import UnlearnConfig, recalibrate_batchnorm_, unlearn_
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr, predict, predict_logits
from pruneguard.export import checked_onnx
from pruneguard.metrics.classification import accuracy, class_kept, mean_kl, paired_change
from pruneguard.models.fit import TrainConfig
from pruneguard.models.io import ModelMeta, cpu_state_dict, save_model
from pruneguard.pruning.anp import ANPConfig, ANPResult, anp_optimize, input_fingerprint
from pruneguard.pruning.neurons import prune_neurons_
from pruneguard.pruning.selection import (
    auto_count,
    curve_counts,
    divergence_count,
    prune_order,
    pruning_curve,
    select_by_threshold,
)
from pruneguard.recipes import Recipe
from pruneguard.reports.html import render_purify_html
from pruneguard.reports.plots import reversed_trigger_png
from pruneguard.reports.provenance import git_commit, now_iso, versions
from pruneguard.reports.verdict import guard_is_blind, model_changed, purify_verdict
from pruneguard.scan.finder import SELF_JUDGED, SuspectFinding, find_suspect, recheck_suspect
from pruneguard.scan.reference import train_reference
from pruneguard.scan.reversal import (
    REVERSAL_KINDS,
    TRIGGER_KINDS,
    ReversalConfig,
    ReversedTrigger,
    reverse_trigger,
)
from pruneguard.utils.device import resolve_device, retune_threads
from pruneguard.utils.io import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    json_default,
    sha256_bytes,
    sha256_file,
)
from pruneguard.utils.modes import layout_setting
from pruneguard.workflows.common import (
    LoadedModel,
    draw_clean_split,
    load_for_defense,
    make_trigger,
    on_device,
    trigger_set,
)
from pruneguard.workflows.export import check_inputs, onnx_metadata

__all__ = [
    "purify",
    "select_neurons",
    "write_purify_outputs",
    "weights_sha256",
    "PURIFIED_NAME",
    "ONNX_NAME",
    "split_clean",
    "suspect_step",
]

logger = logging.getLogger(__name__)
PURIFIED_NAME = "purified.safetensors"
ONNX_NAME = "purified.onnx"
_CURVE_ASR_SAMPLES = 1000
_CURVE_STOP_DROP = 0.3


def split_clean(clean: ArrayData, fraction: float, seed: int) -> tuple[ArrayData, ArrayData | None]:
    """(the part the recipe's steps use, the validation part) of the clean data; no validation for ``fraction`` 0."""
    if fraction == 0:
        return clean, None
    gen = torch.Generator().manual_seed(seed + 1)  # a stream of its own: the clean draw used ``seed``
    use, val = validation_split(clean.y, fraction, generator=gen)
    return clean.subset(use, name=f"{clean.name}:use"), clean.subset(val, name=f"{clean.name}:validation")


def suspect_step(
    recipe: Recipe,
    model: nn.Module,
    use: ArrayData,
    meta: ModelMeta,
    seed: int,
    *,
    sensitivity: dict[str, Any] | None = None,
    reversal: dict[str, Any] | None = None,
) -> SuspectFinding:
    """The recipe's suspect step on the clean data it may use (the reference model built from ``meta``);
    ``sensitivity`` and ``reversal``: scans already run on ``use`` (see :func:`~pruneguard.scan.find_suspect`)."""
    return find_suspect(
        model,
        use,
        method=recipe.suspect.method,
        target=recipe.suspect.target,
        reference_ratio=recipe.suspect.reference_ratio,
        rule=recipe.suspect.evidence,
        relative_cut=recipe.suspect.relative_cut,
        corroborated_cut=recipe.suspect.corroborated_cut,
        sensitivity_evidence=recipe.suspect.sensitivity_evidence,
        build_reference=lambda: meta.build(seed=seed),
        batch_size=recipe.anp.batch_size,
        seed=seed,
        sensitivity=sensitivity,
        reversal=reversal,
        kinds=reversal_kinds(recipe),
    )


SUSPECT_STATE = "suspect_state.pt"


def kept_suspect_step(
    recipe: Recipe, model: nn.Module, use: ArrayData, meta: ModelMeta, seed: int, path: Path, resume: bool
) -> SuspectFinding:
    """:func:`suspect_step`, its finding kept in ``path`` for ``resume``: a resumed run reads it back instead of
    scanning again, when it was made for the same model, clean data, suspect settings and seed (the finder is
    deterministic, so only the time differs; the reference model the vote trained is kept with it)."""
    key = json.dumps(
        {
            "suspect": recipe.suspect.model_dump(mode="json"),
            "kinds": list(reversal_kinds(recipe)),
            "batch_size": recipe.anp.batch_size,
            "seed": seed,
            "fingerprint": input_fingerprint(model, use),
        },
        sort_keys=True,
    )
    if resume and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("key") == key:
            kept = json.loads(state["finding"])
            reference = None
            if state.get("reference") is not None:
                reference = on_device(meta.build(seed=seed), next(model.parameters()).device)
                reference.load_state_dict(state["reference"])
                reference.eval()
            logger.info("suspect step read back from %s", path)
            return SuspectFinding(kept["target"], kept["evidence"], kept["reasons"], kept["record"], reference)
        logger.warning("ignoring %s: it was made for another model, clean data or suspect settings", path)
    finding = suspect_step(recipe, model, use, meta, seed)
    kept = {"target": finding.target, "evidence": finding.evidence, "reasons": finding.reasons}
    state = {
        "key": key,
        "finding": json.dumps({**kept, "record": finding.record}, default=json_default),
        "reference": (None if finding.reference is None else cpu_state_dict(finding.reference)),
    }
    with atomic_write(path, "wb") as fh:
        torch.save(state, fh)
    return finding


def reversal_kinds(recipe: Recipe) -> tuple[str, ...]:
    """The trigger kinds the recipe's suspect step reverses. The recheck's reference test reverses the stamps only;
    a warp, judged against the model's own classes, has a test of its own where it decided the evidence
    (:func:`decided_by_warp`), which reverses it to every class again on the held-out images."""
    return REVERSAL_KINDS if recipe.suspect.warp else TRIGGER_KINDS


def decided_by_warp(finding: SuspectFinding) -> bool:
    """Whether a warp (a kind judged against the model's own classes) decided the finding's evidence."""
    return finding.evidence and (finding.record.get("vote") or {}).get("kind") in SELF_JUDGED


def repair_kinds(recipe: Recipe, finding: SuspectFinding) -> tuple[str, ...]:
    """The trigger kinds the repair reverses and unlearns. ``auto``: the stamps, and the warp where a warp decided
    the suspect step's evidence (:func:`decided_by_warp`). Unlearning a warp costs accuracy on a model whose
    backdoor a stamp found (a faint-pattern development model: 1.22 points against 0.77), and a stamp alone leaves
    most of a warp backdoor in place."""
    trigger = recipe.repair.trigger
    if trigger == "auto":
        return TRIGGER_KINDS + (SELF_JUDGED if decided_by_warp(finding) else ())
    return {"both": TRIGGER_KINDS, "all": REVERSAL_KINDS}.get(trigger, (trigger,))


def select_neurons(
    recipe: Recipe, masks: Tensor, curve: list[dict[str, float]], tiebreak: Tensor | None = None
) -> tuple[Tensor, str, float]:
    """The neurons to prune under the recipe's rule: (indices, rule description, largest mask pruned).

    ``curve`` is the pruning curve on the validation data (key ``clean_accuracy``); with ``select.capped`` and a
    guard, no more neurons are pruned than keep the validation accuracy within ``max_acc_drop`` of the original.
    ``tiebreak`` orders equal masks (:func:`~pruneguard.pruning.selection.prune_order`).
    """
    sel = recipe.select
    order = prune_order(masks, tiebreak)
    if sel.rule == "count":
        idx, rule = order[: min(sel.count, masks.numel())], f"count={sel.count}"
    elif sel.rule == "fraction":
        idx, rule = order[: int(round(sel.fraction * masks.numel()))], f"fraction={sel.fraction}"
    else:
        idx, rule = select_by_threshold(masks, sel.threshold, tiebreak), f"threshold={sel.threshold}"
    caps = []  # (largest count allowed, why)
    if sel.capped and recipe.max_acc_drop is not None:
        caps.append((auto_count(curve, recipe.max_acc_drop), f"validation accuracy drop <= {recipe.max_acc_drop}"))
    if sel.max_kl is not None:
        caps.append((divergence_count(curve, sel.max_kl), f"divergence from the original <= {sel.max_kl} nats"))
    for cap, why in caps:
        if idx.numel() > cap:
            idx = order[:cap]
            rule += f", capped at {cap} ({why})"
    reached = float(masks[idx].max()) if idx.numel() else 0.0
    return idx, rule, reached


def _layer_summary(result: ANPResult, pruned: Tensor) -> list[dict[str, Any]]:
    flags = torch.zeros(result.masks.numel(), dtype=torch.bool)
    flags[pruned] = True
    rows, start = [], 0
    for g in result.groups:
        sl = slice(start, start + g.size)
        rows.append(
            {
                "layer": g.module,
                "kind": g.kind,
                "neurons": g.size,
                "pruned": int(flags[sl].sum()),
                "mask_mean": float(result.masks[sl].mean()),
            }
        )
        start += g.size
    return rows


class _Judge:
    """Accuracy on the test split and the validation part, and the benchmark trigger's ASR when one is given."""

    def __init__(self, loaded: LoadedModel, validation: ArrayData | None, cfg: PurifyConfig) -> None:
        self.test, self.validation = loaded.test, validation
        attack = make_trigger(cfg.eval_attack, loaded.meta, cfg.target_label, cfg.model) if cfg.eval_attack else None
        self.triggered = trigger_set(attack, loaded.test) if attack is not None else None
        self.target = attack.target_label if attack is not None else None

    def __call__(self, model: nn.Module) -> dict[str, Any]:
        out: dict[str, Any] = {"accuracy": evaluate_accuracy(model, self.test), "asr": None}
        out["validation_accuracy"] = evaluate_accuracy(model, self.validation) if self.validation is not None else None
        if self.triggered is not None and self.target is not None:
            out["asr"] = evaluate_asr(model, self.triggered, self.target)
        return out


def purify(
    cfg: PurifyConfig,
    *,
    progress: bool = False,
    loaded: LoadedModel | None = None,
    resume: bool = False,
    finding: SuspectFinding | None = None,
) -> tuple[dict[str, Any], nn.Module, ModelMeta]:
    """Run ``cfg.recipe``; the suspect step's finding and the ANP state (for ``resume``) are kept in ``cfg.out``.
    ``finding``: the suspect step's result when it is already known for this model and clean draw (recipe variants
    that differ after it).

    Returns the report (a JSON-ready dict whose ``verdict`` says what happened: ``purified``, ``unchanged`` or
    ``failed``), the model to save (on ``cfg.device``) and its metadata (see :func:`write_purify_outputs`). The
    input model is not modified.
    """
    started, t0 = now_iso(), time.perf_counter()
    recipe = cfg.recipe
    loaded = loaded or load_for_defense(
        cfg.model,
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        arch=cfg.arch,
        arch_kwargs=cfg.arch_kwargs,
        trust_pickle=cfg.trust_pickle,
    )
    model = on_device(loaded.model, resolve_device(cfg.device))
    images = loaded.train.x.dim() == 4
    if recipe.suspect.target is not None and recipe.suspect.target >= loaded.meta.num_classes:
        raise ConfigError(
            f"recipe.suspect.target={recipe.suspect.target} is outside [0, {loaded.meta.num_classes - 1}]"
        )
    if not images and (recipe.repair.method == "unlearn" or recipe.suspect.method in ("reversal", "vote")):
        raise ConfigError(
            f"recipe {recipe.name!r} reverses image triggers (suspect.method={recipe.suspect.method}, "
            f"repair.method={recipe.repair.method}); dataset {loaded.dataset} has no images"
        )
    clean, clean_info = draw_clean_split(
        loaded, clean_fraction=cfg.clean_fraction, clean_samples=cfg.clean_samples, seed=cfg.seed
    )
    use, validation = split_clean(clean, recipe.validation_fraction, cfg.seed)
    judge = _Judge(loaded, validation, cfg)
    before = judge(model)
    logger.info("before: %s", before)
    cfg.out.mkdir(parents=True, exist_ok=True)

    finding = finding or kept_suspect_step(recipe, model, use, loaded.meta, cfg.seed, cfg.out / SUSPECT_STATE, resume)
    report: dict[str, Any] = {
        "schema": "pruneguard.purify/2",
        "model": str(cfg.model),
        "model_sha256": loaded.sha256,
        "dataset": loaded.dataset,
        **clean_info,
        "used_samples": len(use),
        "validation_samples": len(validation) if validation is not None else 0,
        "recipe": recipe.name,
        "eval_attack": {"name": cfg.eval_attack, "target_label": judge.target} if cfg.eval_attack else None,
        "before": before,
        "suspect": {"target": finding.target, "evidence": finding.evidence, "reasons": finding.reasons},
        "scan": finding.record.get("sensitivity"),
        "reversal_scan": finding.record.get("reversal"),
        "vote": finding.record.get("vote"),
    }
    refused = guard_is_blind(recipe.max_acc_drop, report["validation_samples"]) and not recipe.unguarded_repair
    if (recipe.suspect.require_evidence and not finding.evidence) or refused:
        purified = copy.deepcopy(model)
        report.update(after=before, steps=[], pruned_neurons=0, total_neurons=None)
        report["blind_guard_refused"] = refused
    else:
        purified, steps = _run_steps(cfg, model, use, validation, finding, judge, report, progress, resume)
        report["steps"] = steps
        report["after"] = judge(purified)
        if validation is not None:  # how many validation predictions moved: the precision of the drop it reads
            report["validation_change"] = paired_change(
                predict(model, validation), predict(purified, validation), validation.y
            )
        recheck = recheck_step(recipe, finding, report, purified, model, use, validation, loaded.meta, cfg.seed)
        if recheck is not None:
            report["recheck"] = recheck
    after = report["after"]
    report["accuracy_drop"] = before["accuracy"] - after["accuracy"]
    if before["validation_accuracy"] is not None:
        report["validation_drop"] = before["validation_accuracy"] - after["validation_accuracy"]
    report["verdict"] = purify_verdict(report, recipe.max_acc_drop, recipe.suspect.require_evidence)
    logger.info("verdict: %s", report["verdict"]["sentence"])
    report.update(
        {
            "seconds": time.perf_counter() - t0,
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "versions": versions(),
            "git_commit": git_commit(),
            "device": str(next(model.parameters()).device),
            "threads": torch.get_num_threads(),
            "layout": layout_setting(),  # the CPU memory layout of the loops with fixed weights (utils.modes)
            "started": started,
            "finished": now_iso(),
        }
    )
    return report, purified, loaded.meta


def rechecks(finding: SuspectFinding, report: dict[str, Any]) -> bool:
    """Whether the finder's evidence tests are re-run on the purified model: a scan found evidence against a class
    (a class the user named is not rechecked) and the steps changed the model."""
    scanned = "sensitivity" in finding.record or "vote" in finding.record
    return finding.evidence and finding.target is not None and scanned and model_changed(report)


def recheck_step(
    recipe: Recipe,
    finding: SuspectFinding,
    report: dict[str, Any],
    purified: nn.Module,
    model: nn.Module,
    use: ArrayData,
    validation: ArrayData | None,
    meta: ModelMeta,
    seed: int,
) -> dict[str, Any] | None:
    """The recheck purify runs after its steps (:func:`~pruneguard.scan.finder.recheck_suspect` on the validation
    part), None where :func:`rechecks` says it does not apply. A finding read back from its record has no reference
    model: it is trained again as the finder trained it (same data and seed)."""
    if finding.target is None or not rechecks(finding, report):
        return None
    reference = finding.reference
    if reference is None and "vote" in finding.record:
        device = next(model.parameters()).device
        reference = train_reference(lambda: meta.build(seed=seed), use, seed=seed, device=device)
    out = recheck_suspect(
        purified,
        model,
        validation if validation is not None else use,
        finding.target,
        reference=reference,
        cut=recipe.suspect.reference_ratio,
        warp_cut=recipe.suspect.relative_cut if decided_by_warp(finding) else None,
        batch_size=recipe.anp.batch_size,
        seed=seed,
    )
    out["data"] = "validation" if validation is not None else "the clean data the steps used"
    return out


def _run_steps(
    cfg: PurifyConfig,
    model: nn.Module,
    use: ArrayData,
    validation: ArrayData | None,
    finding: SuspectFinding,
    judge: _Judge,
    report: dict[str, Any],
    progress: bool,
    resume: bool,
) -> tuple[nn.Module, list[str]]:
    """ANP → selection → repair → guard on a copy of ``model``; fills ``report`` with each step's figures."""
    recipe, steps = cfg.recipe, []
    purified = copy.deepcopy(model)
    report["total_neurons"], report["pruned_neurons"] = None, 0
    if recipe.anp.enabled:
        a = recipe.anp
        anp_cfg = ANPConfig(
            eps=a.eps,
            steps=a.steps,
            alpha=a.alpha,
            iterations=a.iterations,
            batch_size=a.batch_size,
            lr=a.lr,
            clip_noise=a.clip_noise,
            fast=a.fast,
            augment=a.augment,
            seed=cfg.seed,
            checkpoint_every=cfg.checkpoint_every,
            target_class=finding.target if a.targeted else None,
        )
        retune_threads("ANP")
        result = anp_optimize(
            model, use, anp_cfg, state_path=cfg.out / "anp_state.pt", resume=resume, progress=progress
        )
        judged = validation if validation is not None else use  # without validation data: the data ANP used
        evaluators = {"clean_accuracy": lambda m: evaluate_accuracy(m, judged)}
        if recipe.select.max_kl is not None:  # outputs on the judged images against the original's
            reference = predict_logits(model, judged)
            evaluators["kl"] = lambda m: mean_kl(reference, predict_logits(m, judged))
        if judge.triggered is not None and judge.target is not None:  # a benchmark's figure; chooses nothing
            sub, target = (
                judge.triggered.subset(torch.arange(min(len(judge.triggered), _CURVE_ASR_SAMPLES))),
                judge.target,
            )
            evaluators["asr"] = lambda m: evaluate_asr(m, sub, target)
        stop = max(_CURVE_STOP_DROP, (recipe.max_acc_drop or 0.0) + 0.05)
        tiebreak = result.mask_mean if recipe.select.tiebreak else None
        curve = pruning_curve(
            model,
            result.groups,
            result.masks,
            evaluators,
            curve_counts(result.masks),
            stop_drop=stop,
            tiebreak=tiebreak,
        )
        pruned, rule, reached = select_neurons(recipe, result.masks, curve, tiebreak)
        prune_neurons_(purified, result.groups, pruned)
        steps.append("anp")
        report.update(
            {
                "pruned_neurons": int(pruned.numel()),
                "total_neurons": int(result.masks.numel()),
                "pruning_rule": rule,
                "threshold_reached": reached,
                "anp": {
                    "iterations": result.iterations,
                    "seconds": result.seconds,
                    "history": result.history,
                    "target_class": anp_cfg.target_class,
                },
                "layers": _layer_summary(result, pruned),
                "curve": curve,
                "curve_data": "validation" if validation is not None else "the clean data ANP used",
                "masks": result.mask_table(),
            }
        )
    if recipe.repair.method != "none":
        report["after_pruning"] = judge(purified)
        limits = _repair_limits(recipe, model, validation, finding.target, report["before"]["validation_accuracy"])
        repair, attempts, lr = _repair(cfg, purified, use, finding, limits)
        pruned = report["pruned_neurons"]
        if recipe.repair.unpruned_fallback and pruned and attempts and attempts[-1]["scale"] == 0:
            # nothing of the repair fitted after the pruning, which took part of the guard's budget: the repair
            # again from the original model, kept only if something of it fits
            logger.info("the repair kept nothing after pruning %d neurons: again without the pruning", pruned)
            unpruned = copy.deepcopy(model)
            again = _repair(cfg, unpruned, use, finding, limits)
            if again[1][-1]["scale"] > 0:
                purified, (repair, attempts, lr) = unpruned, again
                report["pruning_undone"] = {"pruned": pruned, "after_pruning": report["after_pruning"]}
                report["pruned_neurons"], report["after_pruning"] = 0, dict(report["before"])
                steps.append(f"pruning undone ({pruned} neurons: the repair fitted the guard only without it)")
        report["repair"] = repair
        steps.append(recipe.repair.method + (f" (learning rate {lr:.3g})" if len(attempts) > 1 else ""))
        if attempts:
            report["repair"]["attempts"] = attempts
            assert limits is not None
            report["guard"] = {**limits.record(), **attempts[-1]}
            if attempts[-1]["scale"] < 1.0:
                steps.append(f"repair scaled to {attempts[-1]['scale']:g}")
    return purified, steps


_RoundGuard = Callable[[nn.Module, dict[str, Tensor]], dict[str, Any]]


@dataclass(frozen=True)
class _RepairLimits:
    """What the guard measures of a repaired model on the validation part, and whether it is within the recipe's
    limits: its accuracy at least ``floor`` (the original's less ``max_acc_drop``), and of the validation images
    the original assigns to the suspected class, at least ``min_kept`` still in that class (not judged when the
    original assigns none)."""

    validation: ArrayData
    floor: float | None
    suspect: int | None
    original: Tensor  # the original model's predictions on the validation part
    min_kept: float | None

    def measure(self, model: nn.Module) -> dict[str, float]:
        preds = predict(model, self.validation)
        out = {"accuracy": accuracy(preds, self.validation.y)}
        if self.min_kept is not None and self.suspect is not None:
            kept = class_kept(self.original, preds, self.suspect)
            if kept is not None:
                out["suspect_kept"] = kept
        return out

    def fits(self, figures: Mapping[str, float]) -> bool:
        if self.floor is not None and figures["accuracy"] < self.floor - 1e-12:
            return False
        return self.min_kept is None or figures.get("suspect_kept", 1.0) >= self.min_kept - 1e-12

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"floor": self.floor if self.floor is not None else 0.0}
        if self.min_kept is not None:
            out["min_suspect_kept"] = self.min_kept
            out["suspect_images"] = int((self.original == self.suspect).sum()) if self.suspect is not None else 0
        return out


def _repair_limits(
    recipe: Recipe, model: nn.Module, validation: ArrayData | None, suspect: int | None, before: float | None
) -> _RepairLimits | None:
    """The guard's limits for the repair, None when the recipe sets none (or holds out no validation data)."""
    if validation is None or before is None or (recipe.max_acc_drop is None and recipe.min_suspect_kept is None):
        return None
    floor = before - recipe.max_acc_drop if recipe.max_acc_drop is not None else None
    return _RepairLimits(validation, floor, suspect, predict(model, validation), recipe.min_suspect_kept)


def _repair(
    cfg: PurifyConfig, purified: nn.Module, use: ArrayData, finding: SuspectFinding, limits: _RepairLimits | None
) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """The recipe's repair of ``purified`` (in place) on ``use``, judged by ``limits`` (None: not judged): its
    record, the guard's judgement of each attempt (a repair that kept nothing is run again at a third of the
    learning rate, up to ``repair.retries`` times; with ``repair.guard=backoff`` the rounds lower it themselves)
    and the learning rate of the last attempt."""
    recipe = cfg.recipe
    start = {k: v.detach().clone() for k, v in purified.state_dict().items()}
    teacher = None
    if recipe.repair.method == "unlearn" and recipe.repair.distill > 0:
        teacher = copy.deepcopy(purified)
        if recipe.repair.teacher == "recalibrated":
            recalibrate_batchnorm_(teacher, use, recipe.anp.batch_size)
    lr, attempts = recipe.repair.lr, []
    each_round: _RoundGuard | None = None
    if limits is not None and recipe.repair.guard != "end" and recipe.repair.method == "unlearn":
        each_round = functools.partial(weaken_to_fit, measure=limits.measure, fits=limits.fits)
    # backoff lowers the learning rate within the rounds: a repair that kept nothing is not run again
    retries = 0 if each_round is not None and recipe.repair.guard == "backoff" else recipe.repair.retries
    record: dict[str, Any] = {}
    for attempt in range(retries + 1):
        if attempt:  # nothing of the last attempt fitted: from the pruned model again, at a third of the lr
            purified.load_state_dict(start)
            lr /= 3
        if recipe.repair.method == "unlearn":
            assert finding.target is not None  # the recipe's validator requires a suspect for unlearning
            record = _unlearn(
                cfg,
                purified,
                use,
                finding.target,
                kinds=repair_kinds(recipe, finding),
                teacher=teacher,
                lr=lr,
                guard=each_round,
            )
        else:
            record = _finetune(cfg, purified, use, lr=lr)
        if limits is None:
            break
        if each_round is not None:
            guard = _rounds_summary(record.pop("guard_rounds"))
        else:
            guard = weaken_to_fit(purified, start, limits.measure, limits.fits)
        attempts.append({"lr": lr, **guard})
        if guard["scale"] > 0:
            break
    return record, attempts, lr


def _rounds_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The guard's record of a repair judged round by round: ``scale`` 0 when no round was kept (nothing of the
    repair kept), else the smallest scale a kept round was given (1: every round whole); ``tried`` of the last
    round judged; ``rounds``: each round's learning rate, scale and accuracies."""
    kept = [r["scale"] for r in rounds if r["scale"] > 0]
    return {
        "scale": min(kept, default=0.0),
        "tried": rounds[-1]["tried"],
        "rounds": rounds,
    }


def _finetune(cfg: PurifyConfig, model: nn.Module, data: ArrayData, *, lr: float) -> dict[str, Any]:
    r = cfg.recipe.repair
    images = data.x.dim() == 4
    ft_cfg = TrainConfig(
        epochs=r.epochs,
        lr=lr,
        batch_size=min(cfg.recipe.anp.batch_size, 64),
        seed=cfg.seed,
        crop_padding=1 if images else 0,
        hflip=images,
    )
    res = fine_tune_(model, data, ft_cfg, keep_zero=zero_masks(model))
    return {"method": "finetune", "epochs": r.epochs, "lr": lr, "seconds": res.seconds}


def _unlearn(
    cfg: PurifyConfig,
    model: nn.Module,
    data: ArrayData,
    suspect: int,
    *,
    kinds: tuple[str, ...],
    teacher: nn.Module | None,
    lr: float,
    guard: _RoundGuard | None = None,
) -> dict[str, Any]:
    """Reverse triggers of ``kinds`` to the suspected class on the pruned model, then unlearn them (in place), in
    rounds; each later round reverses on the unlearned model and unlearns every trigger found so far. With ``guard``,
    each round is judged against the model it started from (scaled back if it costs too much) and the record's
    ``guard_rounds`` holds each judgement. ``repair.guard`` ``round``: an undone round ends the repair;
    ``backoff``: an undone round is run again at a third of the learning rate, which the later rounds keep (at
    most ``repair.retries`` times in all; on the same triggers: the model is back where they were reversed), and
    only an undone round at the lowest rate ends the repair."""
    r = cfg.recipe.repair
    rcfg = ReversalConfig(steps=r.reversal_steps, batch_size=cfg.recipe.anp.batch_size)
    trigs: list[ReversedTrigger] = []
    rounds: list[int] = []
    judged: list[dict[str, Any]] = []
    seconds, lowered, rate = 0.0, 0, lr
    for n in range(1, r.rounds + 1):
        gen_seed = cfg.seed + n - 1
        # an undone round leaves the model here again: the start of every try of this round
        before = {k: v.detach().clone() for k, v in model.state_dict().items()} if guard is not None else None
        for k in kinds:
            gen = torch.Generator().manual_seed(gen_seed)
            trigs.append(reverse_trigger(model, data, suspect, rcfg, generator=gen, kind=k))
            rounds.append(n)
        while True:  # one try of round n; with backoff, an undone try is run again at a third of the rate
            ucfg = UnlearnConfig(
                batch_size=cfg.recipe.anp.batch_size,
                epochs=r.epochs,
                finetune_lr=rate,
                distill=r.distill,
                distill_suppress=r.suppress,
                distill_augment=r.distill_augment,
                adv_eps=r.adv_eps,
            )
            seconds += unlearn_(model, data, trigs, ucfg, seed=gen_seed, teacher=teacher, target=suspect)
            logger.info("round %d: unlearned %d reversed trigger(s) (%.1fs)", n, len(trigs), seconds)
            if guard is None or before is None:
                break
            judged.append({"round": n, "lr": rate, **guard(model, before)})
            if judged[-1]["scale"] > 0 or r.guard != "backoff" or lowered >= r.retries:
                break
            lowered, rate = lowered + 1, rate / 3
            logger.info("round %d undone by the guard: again at learning rate %.3g", n, rate)
        if judged and judged[-1]["scale"] == 0:
            logger.info("round %d undone by the guard: the repair ends", n)
            break
    others = to_float(data.x[data.y != suspect][:4])
    figures = [
        reversed_trigger_png(
            t,
            others,
            title=f"{t.kind} trigger reversed to class {suspect} on the pruned model: success {t.success_rate:.0%}",
        )
        for t, n in zip(trigs, rounds, strict=True)
        if n == 1
    ]
    return {
        "method": "unlearn",
        "target": suspect,
        "triggers": [{**t.to_dict(), "round": n} for t, n in zip(trigs, rounds, strict=True)],
        "rounds": max(rounds, default=0),
        "epochs": r.epochs,
        "lr": lr,
        "distill": r.distill,
        "teacher": r.teacher if r.distill > 0 else None,
        "suppress": r.suppress,
        "distill_augment": r.distill_augment,
        "adv_eps": r.adv_eps,
        "seconds": sum(t.seconds for t in trigs) + seconds,
        "figures_png": figures,
        **({"guard_rounds": judged} if guard is not None else {}),
    }


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's tensors (safetensors serialisation without metadata): names weights, not files."""
    return sha256_bytes(save(cpu_state_dict(model)))


def config_yaml(cfg: PurifyConfig) -> str:
    """The run's config as YAML, paths made absolute: ``purify --config`` on it reproduces the run."""
    data = cfg.to_dict()
    for key in ("model", "data_dir", "policy", "out"):
        if data.get(key) is not None:
            data[key] = str(Path(data[key]).expanduser().resolve())
    return yaml.safe_dump(data, sort_keys=False)


def _write_onnx(cfg: PurifyConfig, report: dict[str, Any], purified: nn.Module, meta: ModelMeta) -> dict[str, Any]:
    """``purified.onnx`` beside the model, checked with onnxruntime against PyTorch on 256 test images; the
    report's ``onnx`` section."""
    x, inputs = check_inputs(meta, dataset=report["dataset"], data_dir=cfg.data_dir, n=256, seed=cfg.seed)
    blob, check = checked_onnx(purified, x, inputs=inputs, metadata=onnx_metadata(meta, report["purified_sha256"]))
    with atomic_write(cfg.out / ONNX_NAME, "wb") as fh:
        fh.write(blob)
    return {"file": ONNX_NAME, **check.to_dict()}


def write_purify_outputs(cfg: PurifyConfig, report: dict[str, Any], purified: nn.Module, meta: ModelMeta) -> Path:
    """Write config.yaml, the purified model, report.html and, last, report.json (a folder with a report.json is
    complete). The model's metadata names its source's hash and the config's; the report names the model's."""
    atomic_write_text(cfg.out / "config.yaml", config_yaml(cfg))
    extra = dict(meta.extra)
    extra["purified_from"] = {
        "model_sha256": report["model_sha256"],
        "config_sha256": sha256_file(cfg.out / "config.yaml"),
        "recipe": cfg.recipe.name,
        "verdict": report["verdict"]["status"],
        "pruned_neurons": report["pruned_neurons"],
    }
    path = cfg.out / PURIFIED_NAME
    out_meta = replace(meta, extra=extra)
    save_model(path, purified, out_meta)
    report["purified_model"] = str(path)
    report["purified_sha256"] = sha256_file(path)
    report["purified_weights_sha256"] = weights_sha256(purified)
    if cfg.onnx:
        report["onnx"] = _write_onnx(cfg, report, purified, out_meta)
    atomic_write_text(cfg.out / "report.html", render_purify_html(report))
    atomic_write_json(cfg.out / "report.json", report)
    return path
