"""The purify job: ANP on the defender's clean split -> prune -> (fine-tune) -> evaluate -> model + report."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import Tensor, nn

from pruneguard.config import PurifyConfig
from pruneguard.data.tensors import ArrayData
from pruneguard.defenses.fine_tune import fine_tune_, zero_masks
from pruneguard.defenses.unlearning import (
    TRIGGER_KINDS,
    ReversedTrigger,
    UnlearnConfig,
    recalibrate_batchnorm_,
    reversal_scan,
    reverse_trigger,
    scan_config,
    unlearn_,
)
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr
from pruneguard.models.io import ModelMeta, save_model
from pruneguard.pruning.anp import ANPConfig, ANPResult, anp_optimize
from pruneguard.pruning.neurons import prune_neurons_
from pruneguard.pruning.selection import (
    auto_count,
    curve_counts,
    pruning_curve,
    select_by_threshold,
    select_smallest,
)
from pruneguard.reports.html import render_purify_html
from pruneguard.reports.provenance import git_commit, now_iso, versions
from pruneguard.scan.reference import reference_trigger_sizes, train_reference
from pruneguard.scan.sensitivity import ScanConfig, scan_model
from pruneguard.scan.suspect import combine_suspects, reference_suspect, vote_candidates, vote_suspects
from pruneguard.training.train import TrainConfig
from pruneguard.utils.device import retune_threads
from pruneguard.utils.io import atomic_write_json, atomic_write_text, sha256_bytes, sha256_file
from pruneguard.workflows.common import (
    LoadedModel,
    draw_clean_split,
    load_for_defense,
    make_trigger,
    trigger_set,
)

__all__ = ["purify", "select_neurons", "write_purify_outputs", "weights_sha256", "PURIFIED_NAME"]

logger = logging.getLogger(__name__)
PURIFIED_NAME = "purified.safetensors"
_CURVE_ASR_SAMPLES = 1000
_CURVE_STOP_DROP = 0.3


def _measure(model: nn.Module, test: ArrayData, triggered: ArrayData | None, target: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"accuracy": evaluate_accuracy(model, test), "asr": None}
    if triggered is not None and target is not None:
        out["asr"] = evaluate_asr(model, triggered, target)
    return out


def select_neurons(cfg: PurifyConfig, masks: Tensor, curve: list[dict[str, float]]) -> tuple[Tensor, str, float]:
    """The neurons to prune under the configured rule: (indices, rule description, threshold reached)."""
    order = torch.argsort(masks, stable=True)
    if cfg.prune_count is not None:
        idx, rule = select_smallest(masks, cfg.prune_count), f"count={cfg.prune_count}"
    elif cfg.prune_fraction is not None:
        idx = select_smallest(masks, int(round(cfg.prune_fraction * masks.numel())))
        rule = f"fraction={cfg.prune_fraction}"
    elif cfg.threshold == "auto":
        k = auto_count(curve, cfg.max_acc_drop)
        idx, rule = order[:k], f"auto (max clean-split accuracy drop {cfg.max_acc_drop})"
    else:
        idx, rule = select_by_threshold(masks, float(cfg.threshold)), f"threshold={cfg.threshold}"
    if cfg.cap_acc_drop is not None:
        # ANP's over-pruning guard: the rule's count, but no more than the clean split allows
        cap = auto_count(curve, cfg.cap_acc_drop)
        if idx.numel() > cap:
            idx = idx[:cap]
            rule += f", capped at {cap} (clean-split accuracy drop <= {cfg.cap_acc_drop})"
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


def purify(
    cfg: PurifyConfig, *, progress: bool = False, loaded: LoadedModel | None = None
) -> tuple[dict[str, Any], nn.Module, ModelMeta]:
    """Run ANP, prune and evaluate; the ANP state (for ``--resume``) is kept in ``cfg.out``.

    Returns the report (a JSON-ready dict), the purified model and the metadata to save it with
    (see :func:`write_purify_outputs`). The input model is not modified.
    """
    started, t0 = now_iso(), time.perf_counter()
    loaded = loaded or load_for_defense(
        cfg.model,
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        arch=cfg.arch,
        arch_kwargs=cfg.arch_kwargs,
        trust_pickle=cfg.trust_pickle,
    )
    model = loaded.model
    clean, clean_info = draw_clean_split(
        loaded, clean_fraction=cfg.clean_fraction, clean_samples=cfg.clean_samples, seed=cfg.seed
    )
    attack = make_trigger(cfg.eval_attack, loaded.meta, cfg.target_label, cfg.model) if cfg.eval_attack else None
    triggered = trigger_set(attack, loaded.test) if attack is not None else None
    target = attack.target_label if attack is not None else None
    before = _measure(model, loaded.test, triggered, target)
    before["clean_split_accuracy"] = evaluate_accuracy(model, clean)
    logger.info("before: %s", before)

    cfg.out.mkdir(parents=True, exist_ok=True)
    anp_kwargs = cfg.anp_kwargs()
    scan_info: dict[str, Any] | None = None
    if isinstance(cfg.anp_target, int) and cfg.anp_target >= loaded.meta.num_classes:
        raise ConfigError(f"--anp-target={cfg.anp_target} is outside [0, {loaded.meta.num_classes - 1}]")
    if cfg.unlearn and clean.x.dim() != 4:
        raise ConfigError(f"--unlearn reverses an image trigger; dataset {loaded.dataset} has no images")
    if cfg.anp_target in ("auto", "combined", "vote") or (cfg.unlearn and cfg.anp_target is None):
        # the class the neuron-sensitivity scan suspects: targeted ANP pushes towards it, unlearning reverses it
        scan = scan_model(model, clean, ScanConfig(seed=cfg.seed))
        scan_info = {
            "score": scan.score,
            "suspected_target": scan.suspected_target,
            "verdict": scan.verdict,
            "threshold": scan.threshold,
            "target_share": scan.target_share,
            "seconds": scan.seconds,
        }
        if cfg.anp_target == "auto":
            anp_kwargs["target_class"] = scan.suspected_target
    reversal_info: dict[str, Any] | None = None
    if cfg.anp_target in ("reversal", "combined", "vote"):
        if clean.x.dim() != 4:
            raise ConfigError(
                f"--anp-target={cfg.anp_target} reverses an image trigger; dataset {loaded.dataset} has none"
            )
        reversal_info = reversal_scan(model, clean, scan_config(cfg.batch_size), seed=cfg.seed)
        anp_kwargs["target_class"] = reversal_info["suspected_target"]
        logger.info("reversal scan suspects class %d", reversal_info["suspected_target"])
    if cfg.anp_target == "combined":
        assert scan_info is not None and reversal_info is not None
        chosen, source = combine_suspects(
            scan_info["suspected_target"],
            scan_info["score"],
            scan_info["threshold"],
            reversal_info["suspected_target"],
            reversal_info["anomaly_index"],
        )
        anp_kwargs["target_class"] = chosen
        reversal_info = {**reversal_info, "combined": {"suspected_target": chosen, "decided_by": source}}
        logger.info("combined suspect: class %d (%s)", chosen, source)
    if cfg.anp_target == "vote":
        assert scan_info is not None and reversal_info is not None
        chosen, source = vote_suspects(scan_info["suspected_target"], reversal_info["kinds"])
        vote: dict[str, Any] = {"suspected_target": chosen, "decided_by": source}
        if source != "vote" and cfg.vote_tiebreak == "reference":
            vote = _reference_tiebreak(cfg, loaded.meta, model, clean, scan_info, reversal_info)
            chosen = vote["suspected_target"]
        anp_kwargs["target_class"] = chosen
        reversal_info = {**reversal_info, "vote": vote}
        logger.info("voted suspect: class %d (%s)", chosen, vote["decided_by"])
    anp_cfg = ANPConfig(**anp_kwargs)
    retune_threads("ANP")
    result = anp_optimize(
        model, clean, anp_cfg, state_path=cfg.out / "anp_state.pt", resume=cfg.resume, progress=progress
    )
    evaluators = {"clean_accuracy": lambda m: evaluate_accuracy(m, clean)}
    if triggered is not None and target is not None:
        sub = triggered.subset(torch.arange(min(len(triggered), _CURVE_ASR_SAMPLES)))
        evaluators["asr"] = lambda m: evaluate_asr(m, sub, target)
    # the curve ends once clean-split accuracy has lost 30 points (or the auto threshold's or cap's allowance)
    stop = max(_CURVE_STOP_DROP, cfg.max_acc_drop + 0.05, (cfg.cap_acc_drop or 0.0) + 0.05)
    curve = pruning_curve(model, result.groups, result.masks, evaluators, curve_counts(result.masks), stop_drop=stop)
    pruned, rule, reached = select_neurons(cfg, result.masks, curve)

    purified = copy.deepcopy(model)
    prune_neurons_(purified, result.groups, pruned)
    after_pruning = _measure(purified, loaded.test, triggered, target) if cfg.unlearn or cfg.finetune_epochs else None
    unlearn_info: dict[str, Any] | None = None
    if cfg.unlearn:
        suspect = anp_cfg.target_class
        if suspect is None and scan_info is not None:
            suspect = scan_info["suspected_target"]
        assert suspect is not None  # no scan ran only because --anp-target named the class
        teacher = copy.deepcopy(purified) if cfg.unlearn_distill > 0 else None  # the pruned model, frozen
        if teacher is not None and cfg.unlearn_teacher == "recalibrated":
            recalibrate_batchnorm_(teacher, clean, cfg.batch_size)
        unlearn_info = _unlearn(cfg, purified, clean, suspect, teacher=teacher)
    finetune: dict[str, Any] | None = None
    if cfg.finetune_epochs > 0:
        ft_cfg = TrainConfig(
            epochs=cfg.finetune_epochs,
            lr=cfg.finetune_lr,
            batch_size=min(cfg.batch_size, 64),
            seed=cfg.seed,
            crop_padding=1 if clean.x.dim() == 4 else 0,
            hflip=clean.x.dim() == 4,
        )
        res = fine_tune_(purified, clean, ft_cfg, keep_zero=zero_masks(purified))
        finetune = {"epochs": cfg.finetune_epochs, "lr": cfg.finetune_lr, "seconds": res.seconds}
    after = _measure(purified, loaded.test, triggered, target)
    after["clean_split_accuracy"] = evaluate_accuracy(purified, clean)
    logger.info("after: %s", after)

    seconds = time.perf_counter() - t0
    report: dict[str, Any] = {
        "schema": "pruneguard.purify/1",
        "model": str(cfg.model),
        "model_sha256": loaded.sha256,
        "dataset": loaded.dataset,
        **clean_info,
        "eval_attack": {"name": cfg.eval_attack, "target_label": target} if attack is not None else None,
        "before": before,
        "after": after,
        "accuracy_drop": before["accuracy"] - after["accuracy"],
        "pruned_neurons": int(pruned.numel()),
        "total_neurons": int(result.masks.numel()),
        "pruning_rule": rule,
        "threshold": cfg.threshold if cfg.threshold == "auto" else float(cfg.threshold),
        "threshold_reached": reached,
        "after_pruning": after_pruning,
        "unlearn": unlearn_info,
        "finetune": finetune,
        "anp": {
            "iterations": result.iterations,
            "seconds": result.seconds,
            "history": result.history,
            "target_class": anp_cfg.target_class,
        },
        "scan": scan_info,
        "reversal_scan": reversal_info,
        "layers": _layer_summary(result, pruned),
        "curve": curve,
        "masks": result.mask_table(),
        "seconds": seconds,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "device": str(next(model.parameters()).device),
        "threads": torch.get_num_threads(),
        "started": started,
        "finished": now_iso(),
    }
    return report, purified, loaded.meta


def _reference_tiebreak(
    cfg: PurifyConfig,
    meta: ModelMeta,
    model: nn.Module,
    clean: ArrayData,
    scan_info: dict[str, Any],
    reversal_info: dict[str, Any],
) -> dict[str, Any]:
    """No majority among the voices: a reference model trained on the clean split judges the classes they name
    (:func:`~pruneguard.scan.suspect.reference_suspect`); the record of the vote with its figures."""
    candidates = vote_candidates(scan_info["suspected_target"], reversal_info["kinds"])
    t0 = time.perf_counter()
    reference = train_reference(
        lambda: meta.build(seed=cfg.seed), clean, seed=cfg.seed, device=next(model.parameters()).device
    )
    trained = time.perf_counter() - t0
    ref = reference_trigger_sizes(
        reference,
        clean,
        candidates,
        scan_config(cfg.batch_size),  # reversed as the scan reversed the suspect's, so that the sizes compare
        kinds=tuple(reversal_info["kinds"]),
        seed=cfg.seed,
    )
    suspect_sizes = {k: v["mask_l1"] for k, v in reversal_info["kinds"].items()}
    chosen, ratios = reference_suspect(candidates, suspect_sizes, ref["sizes"])
    logger.info("no majority among %s: the reference model names class %d", candidates, chosen)
    return {
        "suspected_target": chosen,
        "decided_by": "reference",
        "candidates": candidates,
        "reference": {
            "sizes": {k: {str(c): v for c, v in d.items()} for k, d in ref["sizes"].items()},
            "ratios": {k: {str(c): v for c, v in d.items()} for k, d in ratios.items()},
            "train_accuracy": evaluate_accuracy(reference, clean),  # on the clean split it was trained on
            "seconds": trained + ref["seconds"],
        },
    }


def _unlearn(
    cfg: PurifyConfig, model: nn.Module, clean: ArrayData, suspect: int, *, teacher: nn.Module | None
) -> dict[str, Any]:
    """Reverse a trigger to the suspected class on the pruned model, then unlearn it (in place); ``teacher`` (the
    pruned model before unlearning) is distilled on clean images when ``cfg.unlearn_distill`` > 0; with
    ``cfg.unlearn_adv_eps`` > 0 each batch also gets targeted PGD copies towards the suspect, true labels."""
    ucfg = UnlearnConfig(
        steps=cfg.unlearn_steps,
        batch_size=cfg.batch_size,
        epochs=cfg.unlearn_epochs,
        finetune_lr=cfg.unlearn_lr,
        distill=cfg.unlearn_distill,
        distill_suppress=cfg.unlearn_distill_suppress,
        distill_augment=cfg.unlearn_distill_augment,
        adv_eps=cfg.unlearn_adv_eps,
    )
    kinds = TRIGGER_KINDS if cfg.unlearn_trigger == "both" else (cfg.unlearn_trigger,)
    trigs: list[ReversedTrigger] = []
    rounds: list[int] = []
    seconds = 0.0
    for r in range(cfg.unlearn_rounds):  # a later round looks for what the earlier unlearning left
        gen_seed = cfg.seed + r
        for k in kinds:
            trigs.append(
                reverse_trigger(model, clean, suspect, ucfg, generator=torch.Generator().manual_seed(gen_seed), kind=k)
            )
            rounds.append(r + 1)
        seconds += unlearn_(model, clean, trigs, ucfg, seed=gen_seed, teacher=teacher, target=suspect)
        logger.info("round %d: unlearned %d reversed trigger(s) (%.1fs)", r + 1, len(trigs), seconds)
    return {
        "trigger": trigs[0].to_dict(),
        "triggers": [{**t.to_dict(), "round": n} for t, n in zip(trigs, rounds, strict=True)],
        "rounds": cfg.unlearn_rounds,
        "epochs": cfg.unlearn_epochs,
        "lr": cfg.unlearn_lr,
        "stamp_fraction": ucfg.stamp_fraction,
        "distill": ucfg.distill,
        "teacher": cfg.unlearn_teacher if ucfg.distill > 0 else None,
        "distill_suppress": ucfg.distill_suppress,
        "distill_augment": ucfg.distill_augment,
        "temperature": ucfg.temperature,
        "adv_eps": ucfg.adv_eps,
        "adv_steps": ucfg.adv_steps,
        "seconds": sum(t.seconds for t in trigs) + seconds,
    }


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's tensors (safetensors serialisation without metadata): names weights, not files."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return sha256_bytes(save(state))


def write_purify_outputs(cfg: PurifyConfig, report: dict[str, Any], purified: nn.Module, meta: ModelMeta) -> Path:
    """Write report.json / report.html, then the purified model whose metadata names both hashes.

    The report names the purified weights' hash; the model file names its source's hash and the report's.
    """
    report["purified_model"] = str(cfg.out / PURIFIED_NAME)
    report["purified_weights_sha256"] = weights_sha256(purified)
    atomic_write_json(cfg.out / "report.json", report)
    atomic_write_text(cfg.out / "report.html", render_purify_html(report))
    extra = dict(meta.extra)
    extra["purified_from"] = {
        "model_sha256": report["model_sha256"],
        "report_sha256": sha256_file(cfg.out / "report.json"),
        "pruned_neurons": report["pruned_neurons"],
        "rule": report["pruning_rule"],
    }
    path = cfg.out / PURIFIED_NAME
    save_model(path, purified, replace(meta, extra=extra))
    return path
