"""The harden job: baseline -> iterative prune / fine-tune -> re-evaluate -> (int8) -> report and model.

1. Baseline: the dense model on ``n_eval`` test samples: clean, FGSM, PGD, Square, an eps sweep, gradient
   sensitivity and masking flags.
2-3. Prune by ``step`` up to ``target_sparsity`` (global magnitude, or channel removal with ``structured``),
   fine-tuning each cycle on the training part the model was trained on (the training split minus its
   held-out indices), optionally adversarially. Collapse is judged on the defender's held-out split: clean
   accuracy more than ``max_acc_drop`` below the dense model's, or PGD accuracy below it (``robust_stop``);
   the run stops there and keeps the last good model.
4. Re-evaluate the pruned model like the baseline, plus transfer attacks crafted on the dense model. Tabular
   data with a rare class (or ``positive_label``) also gets that class's metrics per stage and its recall
   under constrained evasion of its own rows (:mod:`pruneguard.workflows.harden_positive`).
5. ``quantize="int8"``: static int8 calibrated on the defender's split, attacked through BPDA (float
   gradients) and by transfer from the float model, never with its own (absent) gradients.

The hardened model is saved with :func:`pruneguard.models.save_model`: unstructured masks are baked in;
a structured model is its state dict plus its channel plans in ``meta.extra["structured"]`` (rebuild it with
:func:`pruneguard.workflows.attack.load_hardened`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from pruneguard.attacks.evasion import BPDAWrapper
from pruneguard.config_harden import HardenConfig
from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.defenses.adversarial_training import adversarial_finetune
from pruneguard.evaluation.robustness import (
    RobustnessSpec,
    correct_mask,
    evaluate_robustness,
    latency_ms,
    parameter_counts,
    run_attack,
    transfer_matrix,
)
from pruneguard.export import checked_onnx
from pruneguard.metrics.robustness import flag_quantized_masking, robustness_verdict
from pruneguard.models.fit import TrainConfig
from pruneguard.models.io import ModelMeta, save_model
from pruneguard.policy import Policy, evaluate_policy, policy_record
from pruneguard.pruning import MagnitudePruner, make_permanent_, prune_finetune, sparsity, step_schedule
from pruneguard.pruning.base import PruningPlan
from pruneguard.pruning.features import FeatureMaskPruner, feature_importance, first_linear, top_features
from pruneguard.pruning.structured import channel_widths
from pruneguard.pruning.structured_iterative import channel_sparsity, prune_finetune_structured
from pruneguard.quantization import quantize
from pruneguard.reports.harden_html import render_harden_html
from pruneguard.reports.provenance import git_commit, now_iso, versions
from pruneguard.training.train import train_model
from pruneguard.utils.io import atomic_write, atomic_write_json, atomic_write_text, sha256_file
from pruneguard.utils.seed import make_generator
from pruneguard.workflows.attack import eval_sample
from pruneguard.workflows.harden_data import DENSE_NAME, HardenData, prepare_data, robustness_spec, save_dense
from pruneguard.workflows.harden_positive import attach_positive_class_, evaluate_positive_class
from pruneguard.workflows.purify import weights_sha256

__all__ = ["HardenResult", "harden", "write_harden_outputs", "harden_measurements", "HARDENED_NAME"]

logger = logging.getLogger(__name__)
REPORT_SCHEMA = "pruneguard.harden/1"
HARDENED_NAME = "hardened.safetensors"
ONNX_NAME = "hardened.onnx"
ONNX_INT8_NAME = "hardened_int8.onnx"


@dataclass
class HardenResult:
    report: dict[str, Any]
    model: nn.Module
    meta: ModelMeta
    onnx_files: dict[str, bytes] = field(default_factory=dict)


def _finetuner(cfg: HardenConfig, data: HardenData, spec: RobustnessSpec) -> Callable[[nn.Module], None]:
    """Clean (or adversarial) fine-tuning on the fine-tuning part; masks stay on (pruning hooks)."""
    if cfg.finetune_epochs == 0:
        return lambda model: None
    image = data.space.box is None
    adv_data = data.fit if image else ArrayData(data.space.inputs(data.fit.x), data.fit.y, data.fit.num_classes)
    tcfg = TrainConfig(
        cfg.finetune_epochs, cfg.batch_size, cfg.finetune_lr, crop_padding=int(image), hflip=False, seed=cfg.seed
    )

    def finetune(model: nn.Module) -> None:
        if cfg.adv_train is None:
            train_model(model, data.fit, tcfg)
            return
        adversarial_finetune(
            data.space.view(model),
            adv_data,
            epochs=cfg.finetune_epochs,
            eps=spec.eps,
            step_size=2.5 * spec.eps / cfg.adv_steps,
            steps=cfg.adv_steps,
            method=cfg.adv_train,
            beta=cfg.trades_beta,
            lr=cfg.finetune_lr,
            batch_size=cfg.batch_size,
            generator=make_generator(cfg.seed),
        )

    return finetune


def _selector(data: HardenData, spec: RobustnessSpec) -> Callable[[nn.Module], dict[str, float]]:
    """Clean and PGD accuracy on the defender's split: what collapse decisions see."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        view = data.space.view(model)
        ok = correct_mask(view, data.x_sel, data.y_sel)
        res, _ = run_attack(
            view, spec.pgd(), data.x_sel, data.y_sel, generator=make_generator(spec.seed), clean_correct=ok
        )
        return {"clean_accuracy": res.clean_accuracy, "pgd_accuracy": res.robust_accuracy}

    return evaluate


def _prune(cfg: HardenConfig, data: HardenData, spec: RobustnessSpec) -> tuple[nn.Module, list[Any], list[Any], Any]:
    """Run the prune / fine-tune cycles; returns (model, step results, new channel plans, feature table)."""
    dense = data.loaded.model
    schedule = step_schedule(cfg.target_sparsity, cfg.step)
    finetune, evaluate = _finetuner(cfg, data, spec), _selector(data, spec)
    robust_key = "pgd_accuracy" if cfg.robust_stop else None
    state = cfg.out / "state"
    if cfg.structured:
        example = to_float(data.fit.x[:2])
        model, results, plans = prune_finetune_structured(
            dense, schedule, example, finetune, evaluate, max_acc_drop=cfg.max_acc_drop, robust_key=robust_key,
            state_dir=state, resume=cfg.resume,
        )  # fmt: skip
        return (model if model is not dense else copy.deepcopy(dense)), results, plans, None
    model, features = copy.deepcopy(dense), None
    factory: Callable[[float], Any] = lambda s: MagnitudePruner(sparsity=s)  # noqa: E731
    if cfg.feature_keep is not None:
        n = min(len(data.fit), 4096)
        imp = feature_importance(dense, to_float(data.fit.x[:n]), data.fit.y[:n], method=cfg.feature_importance)
        keep = top_features(imp, cfg.feature_keep)
        layer, kept = first_linear(dense), tuple(bool(k) for k in keep.tolist())
        factory = lambda s: FeatureMaskPruner(MagnitudePruner(sparsity=s), layer, kept)  # noqa: E731
        names = data.feature_names or [str(i) for i in range(len(kept))]
        features = [
            {"feature": nm, "importance": float(v), "kept": k} for nm, v, k in zip(names, imp, kept, strict=True)
        ]
    results = prune_finetune(
        model, factory, schedule, finetune, evaluate, max_acc_drop=cfg.max_acc_drop, robust_key=robust_key,
        state_dir=state, resume=cfg.resume,
    )  # fmt: skip
    make_permanent_(model)
    return model, results, [], features


def _collapse(results: list[Any]) -> dict[str, Any]:
    bad = next((r for r in results if r.collapsed), None)
    kept = [r for r in results if not r.collapsed][-1]
    kept_name = "the dense model" if kept.step == 0 else f"the model of step {kept.step} (sparsity {kept.sparsity:g})"
    if bad is None:
        return {"stopped": False, "kept_step": kept.step, "kept_sparsity": kept.sparsity, "message": "no collapse"}
    return {
        "stopped": True,
        "step": bad.step,
        "sparsity": bad.sparsity,
        "reason": bad.reason,
        "kept_step": kept.step,
        "kept_sparsity": kept.sparsity,
        "message": f"step {bad.step} (sparsity {bad.sparsity:g}) collapsed: {bad.reason}. Stopped; kept {kept_name}.",
    }


def _stage(name: str, ev: dict[str, Any], model: nn.Module | None, lat: float, sparse: float, note: str) -> dict:
    acc = {k: v["robust_accuracy"] for k, v in ev["attacks"].items()}
    counts = parameter_counts(model) if model is not None else {"params": None, "nonzero": None}
    transfer = next((v for k, v in acc.items() if k.startswith("transfer_pgd")), None)
    return {
        "stage": name,
        "sparsity": sparse,
        "params": counts["params"],
        "nonzero_params": counts["nonzero"],
        "latency_ms": lat,
        "clean": ev["clean_accuracy"],
        "fgsm": acc.get("fgsm", acc.get("bpda_fgsm")),
        "pgd": acc.get("pgd", acc.get("bpda_pgd")),
        "square": acc.get("square"),
        "transfer_pgd": transfer,
        "flags": [f["check"] for f in ev["flags"]],
        "note": note,
    }


def _quantized(
    data: HardenData, spec: RobustnessSpec, pruned: nn.Module, ev_float: dict, advs: dict
) -> tuple[dict, nn.Module]:
    """Static int8 of ``pruned``, attacked through BPDA and by transfer from the float model."""
    qmodel = quantize(pruned, "static_int8", calibration=data.clean)
    view = BPDAWrapper(data.space.view(qmodel), data.space.view(pruned))
    crafted = {"float": {"pgd": advs["pgd"], "fgsm": advs["fgsm"]}}
    ev, _ = evaluate_robustness(view, data.x_test, data.y_test, spec, transfer_from=crafted, sensitivity=False)
    ev["attacks"] = {("bpda_" + k if k in ("fgsm", "pgd") else k): v for k, v in ev["attacks"].items()}
    under = {k: ev["attacks"][k]["robust_accuracy"] for k in ("bpda_pgd", "transfer_pgd_from_float")}
    flag = flag_quantized_masking(under, ev_float["attacks"]["pgd"]["robust_accuracy"])
    if flag is not None:
        ev["flags"].append(flag.to_dict())
    ev["white_box"] = "BPDA: int8 forward pass, gradients of the float model"
    lat = latency_ms(data.space.view(qmodel), data.x_test[:64])
    note = "evaluated, not saved: rebuild it with quantize(hardened, 'static_int8', calibration=defender split)"
    record = {
        "evaluation": ev,
        "latency_ms": lat,
        "masking_flag": None if flag is None else flag.to_dict(),
        "note": note,
    }
    return record, qmodel


def _onnx_exports(
    cfg: HardenConfig, data: HardenData, pruned: nn.Module, qmodel: nn.Module | None, meta: ModelMeta
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The hardened model (and the int8 one, where the toolchain exports it) as ONNX, each checked with
    onnxruntime against PyTorch on test rows: (report section, file name -> bytes)."""
    test = eval_sample(data.loaded.test, 256, cfg.seed)
    x, inputs = to_float(test.x).float(), f"{len(test)} test rows (stratified, seed {cfg.seed})"
    props = {"pruneguard.model": meta.to_json()}
    blob, check = checked_onnx(pruned, x, inputs=inputs, metadata=props)
    section: dict[str, Any] = {"float": {"file": ONNX_NAME, **check.to_dict()}, "int8": None}
    files = {ONNX_NAME: blob}
    if qmodel is not None:
        try:
            qblob, qcheck = checked_onnx(qmodel, x, inputs=inputs, metadata=props)
        except Exception as exc:  # the exporter's or onnxruntime's refusal is the answer recorded, not a failure
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            section["int8"] = {"file": None, "reason": f"int8 not exported: {type(exc).__name__}: {first}"}
        else:
            section["int8"] = {"file": ONNX_INT8_NAME, **qcheck.to_dict()}
            files[ONNX_INT8_NAME] = qblob
    return section, files


def harden_measurements(report: dict[str, Any]) -> dict[str, Any]:
    """What a policy checks: the hardened model's accuracy drop and robust accuracies (by attack name)."""
    ev = report["evaluations"]["pruned"]
    robust = {k: v["robust_accuracy"] for k, v in ev["attacks"].items()}
    drop = report["evaluations"]["dense"]["clean_accuracy"] - ev["clean_accuracy"]
    return {"accuracy_drop": drop, "robust_accuracy": robust, "attacks": sorted(robust)}


def _summary(
    cfg: HardenConfig, data: HardenData, ev: dict[str, Any], pruned: nn.Module, quantized: dict[str, Any] | None
) -> dict[str, Any]:
    """The per-stage table, every flag (with the model it was raised on) and the verdict."""
    dense, x = data.loaded.model, data.x_test[:64]
    sparse = channel_sparsity(channel_widths(dense), pruned) if cfg.structured else sparsity(pruned)
    lat = {k: latency_ms(data.space.view(m), x) for k, m in (("dense", dense), ("pruned", pruned))}
    stages = [
        _stage("dense", ev["dense"], dense, lat["dense"], sparsity(dense), "the input model"),
        _stage("pruned", ev["pruned"], pruned, lat["pruned"], sparse, "transfer: PGD crafted on the dense model"),
    ]
    if quantized is not None:
        note = "FGSM/PGD through BPDA (float gradients); transfer: PGD crafted on the float model"
        stages.append(_stage("int8", ev["int8"], None, quantized["latency_ms"], sparse, note))
    accs = {
        name: {"clean": ev[name]["clean_accuracy"], **{k: v["robust_accuracy"] for k, v in ev[name]["attacks"].items()}}
        for name in ("dense", "pruned")
    }
    verdict = robustness_verdict(
        accs["dense"],
        accs["pruned"],
        n=len(data.y_test),
        flags=ev["pruned"]["flags"],
        adversarial_training=cfg.adv_train,
    )
    flags = [{"model": name, **f} for name, e in ev.items() for f in e["flags"]]
    return {"stages": stages, "flags": flags, "verdict": verdict}


def _setup(
    cfg: HardenConfig, data: HardenData, spec: RobustnessSpec, plans: list[PruningPlan], features: Any
) -> dict[str, Any]:
    """What was run: model, data sources, threat model, evaluation protocol and pruning settings."""
    return {
        "schema": REPORT_SCHEMA,
        "model": str(cfg.model if cfg.model is not None else cfg.out / DENSE_NAME),
        "model_sha256": data.loaded.sha256,
        "dataset": data.loaded.dataset,
        "kind": data.loaded.info.kind,
        "data": data.sources,
        "threat_model": data.space.describe(cfg.eps, cfg.norm),
        "protocol": {
            "n_eval": len(data.y_test),
            "pgd_steps": cfg.pgd_steps,
            "pgd_step_size": 2.5 * cfg.eps / cfg.pgd_steps,
            "pgd_random_start": True,
            "square_queries": spec.square_queries,
            "eps_sweep": [e * spec.eps_unit for e in spec.sweep],
            "robust_accuracy": "correct on the clean input and under the attack, over all n_eval samples",
        },
        "pruning": {
            "method": "channel removal (group L2 norm, Torch-Pruning)" if cfg.structured else "global L1 magnitude",
            "schedule": step_schedule(cfg.target_sparsity, cfg.step),
            "finetune_epochs": cfg.finetune_epochs,
            "adversarial_training": cfg.adv_train,
            "features": features,
            "remaining_widths": plans[-1].remaining if plans else None,
        },
    }


def harden(cfg: HardenConfig, *, policy: Policy | None = None) -> HardenResult:
    """Run the five steps; return the report (JSON-ready), the hardened model and its metadata. The input
    model file is not modified; resumable state is kept in ``cfg.out / "state"``."""
    started, t0 = now_iso(), time.perf_counter()
    data = prepare_data(cfg)
    spec = robustness_spec(cfg, data)
    data = save_dense(cfg, data)
    space, x, y = data.space, data.x_test, data.y_test
    ev, advs = {}, {}
    ev["dense"], advs["dense"] = evaluate_robustness(space.view(data.loaded.model), x, y, spec)
    pruned, results, plans, features = _prune(cfg, data, spec)
    crafted = {"dense": {"pgd": advs["dense"]["pgd"], "fgsm": advs["dense"]["fgsm"]}}
    ev["pruned"], advs["pruned"] = evaluate_robustness(space.view(pruned), x, y, spec, transfer_from=crafted)
    quantized, qmodel = (
        _quantized(data, spec, pruned, ev["pruned"], advs["pruned"]) if cfg.quantize == "int8" else (None, None)
    )
    if quantized is not None:
        ev["int8"] = quantized["evaluation"]
    views = {"dense": space.view(data.loaded.model), "pruned": space.view(pruned)}
    report: dict[str, Any] = {
        **_setup(cfg, data, spec, plans, features),
        **_summary(cfg, data, ev, pruned, quantized),
        "iterations": [r.to_dict() for r in results],
        "collapse": _collapse(results),
        "evaluations": ev,
        "transfer_curve": transfer_matrix(views, {k: a["sweep"] for k, a in advs.items()}, x, y, spec),
        "quantized": quantized,
        "seconds": time.perf_counter() - t0,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "device": str(x.device),
        "started": started,
    }
    float_models = {"dense": data.loaded.model, "pruned": pruned}
    attach_positive_class_(report, evaluate_positive_class(cfg, data, float_models, int8=quantized is not None))
    if policy is not None:
        report["policy"] = policy_record(evaluate_policy(policy, harden_measurements(report)), cfg.policy)
    prior = list((data.loaded.meta.extra.get("structured") or {}).get("plans", []))
    all_plans = prior + [p.to_dict() for p in plans]
    extra = {k: v for k, v in data.loaded.meta.extra.items() if k != "structured"}
    if all_plans:
        extra["structured"] = {"plans": all_plans, "remaining": PruningPlan.from_dict(all_plans[-1]).remaining}
    meta = replace(data.loaded.meta, extra=extra)
    files: dict[str, bytes] = {}
    if cfg.onnx:
        report["onnx"], files = _onnx_exports(cfg, data, pruned, qmodel, meta)
    report["finished"] = now_iso()
    return HardenResult(report, pruned, meta, files)


def write_harden_outputs(cfg: HardenConfig, result: HardenResult) -> Path:
    """Write report.json, report.html and config.yaml, then the hardened model naming both hashes."""
    report, path = result.report, cfg.out / HARDENED_NAME
    report["hardened_model"] = str(path)
    report["hardened_weights_sha256"] = weights_sha256(result.model)
    cfg.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.out / "report.json", report)
    atomic_write_text(cfg.out / "report.html", render_harden_html(report))
    atomic_write_text(cfg.out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    extra = dict(result.meta.extra)
    extra["hardened_from"] = {
        "model_sha256": report["model_sha256"],
        "report_sha256": sha256_file(cfg.out / "report.json"),
        "structured": cfg.structured,
        "sparsity": report["stages"][1]["sparsity"],
        "adversarial_training": cfg.adv_train,
    }
    save_model(path, result.model, replace(result.meta, extra=extra))
    for name, blob in result.onnx_files.items():
        with atomic_write(cfg.out / name, "wb") as fh:
            fh.write(blob)
    return path
