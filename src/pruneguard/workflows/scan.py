"""The scan job: neuron-sensitivity scan of an untrusted model on the defender's clean split -> report.

No retraining and no trigger knowledge: the model file, its dataset and a few clean samples are all it uses.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import Field, field_validator, model_validator

from pruneguard.config import RunConfig
from pruneguard.config_model import ModelDescriptionConfig
from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_accuracy
from pruneguard.policy import Policy, evaluate_policy, policy_record
from pruneguard.recipes import get_recipe
from pruneguard.reports.plots import reversed_trigger_png
from pruneguard.reports.provenance import git_commit, now_iso, versions
from pruneguard.reports.scan_html import render_scan_html
from pruneguard.scan.finder import sensitivity_record
from pruneguard.scan.reversal import SCAN_STEPS, TRIGGER_KINDS, restrict_kinds, reversal_scan, reverse_trigger
from pruneguard.scan.reversal import scan_config as finder_scan_config
from pruneguard.scan.sensitivity import (
    DEFAULT_EPS,
    MAX_BATCH_SIZE,
    MAX_RESTARTS,
    MAX_STEPS,
    ScanConfig,
    ScanResult,
    scan_model,
)
from pruneguard.utils.device import resolve_device
from pruneguard.utils.io import atomic_write_json, atomic_write_text
from pruneguard.workflows.common import LoadedModel, draw_clean_split, load_for_defense, on_device
from pruneguard.workflows.purify import reversal_kinds, suspect_step

__all__ = [
    "ScanRunConfig",
    "ScanConfig",
    "SCAN_STEPS",
    "scan",
    "scan_measurements",
    "verdict_sentence",
    "write_scan_outputs",
    "REPORT_SCHEMA",
]

logger = logging.getLogger(__name__)
REPORT_SCHEMA = "pruneguard.scan/1"
_EPS_HELP = "comma-separated numbers in (0, 1], e.g. 0.1,0.2,0.3"
_DEFAULT = ScanConfig()
NC_ANOMALY_CUT = 2.0  # Neural Cleanse flags an anomaly index above 2


class ScanRunConfig(RunConfig, ModelDescriptionConfig):
    """``pruneguard scan``: the neuron-sensitivity scan (see :class:`~pruneguard.scan.ScanConfig`)."""

    model: Path
    out: Path
    dataset: str | None = None
    data_dir: Path | None = None
    clean_fraction: float | None = Field(0.01, gt=0.0, le=1.0, allow_inf_nan=False)
    clean_samples: int | None = Field(None, ge=2)
    eps: tuple[float, ...] = DEFAULT_EPS
    steps: int = Field(_DEFAULT.steps, ge=1, le=MAX_STEPS)
    restarts: int = Field(_DEFAULT.restarts, ge=1, le=MAX_RESTARTS)
    batch_size: int = Field(_DEFAULT.batch_size, ge=4, le=MAX_BATCH_SIZE)
    threshold: float = Field(_DEFAULT.threshold, ge=0.0, allow_inf_nan=False)
    seed: int = Field(0, ge=-(2**63), lt=2**64)
    trust_pickle: bool = False
    policy: Path | None = None
    reversal: bool = False
    reversal_steps: int = Field(SCAN_STEPS, ge=1, le=10_000)
    anomaly_cut: float = Field(NC_ANOMALY_CUT, gt=0.0, allow_inf_nan=False)
    finder: bool = True

    @field_validator("eps", mode="before")
    @classmethod
    def _eps(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                v = tuple(float(s) for s in v.split(","))
            except ValueError:
                raise ValueError(f"accepted: {_EPS_HELP}") from None
        if isinstance(v, list | tuple) and v and all(isinstance(e, int | float) and math.isfinite(e) for e in v):
            if all(0.0 < e <= 1.0 for e in v):
                return tuple(sorted({float(e) for e in v}))
        raise ValueError(f"accepted: {_EPS_HELP}")

    @model_validator(mode="after")
    def _checks(self) -> ScanRunConfig:
        if self.out.expanduser().resolve() == self.model.expanduser().resolve():
            raise ValueError(
                f"--out={self.out} is the input model; choose another folder (inputs are never overwritten)"
            )
        self.scan_config()
        return self

    def scan_config(self) -> ScanConfig:
        return ScanConfig(
            eps=self.eps,
            steps=self.steps,
            restarts=self.restarts,
            batch_size=self.batch_size,
            threshold=self.threshold,
            seed=self.seed,
        )


def _evidence(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per detector: which class it names, its score against its cut, and whether it flags the model.

    ``strength`` is how far a row is towards flagging, 1 at its cut: score / cut, or cut / score for the
    reference finder, whose smaller scores are the suspicious ones (``lower_flags``). ``decides``: the row's flag
    counts for the verdict; with the finder, the sensitivity scan's counts only where the default recipe counts
    it as evidence (else it is recorded, and a voice for the finder's class)."""
    finder = report.get("finder")
    rows = [
        {
            "detector": "neuron sensitivity",
            "measure": "score (share of perturbed errors on one class)",
            "class": report["suspected_target"],
            "score": report["score"],
            "cut": report["threshold"],
            "flagged": report["score"] > report["threshold"],
            "lower_flags": False,
            "decides": finder is None or "ratio" not in finder or bool(finder["sensitivity_evidence"]),
        }
    ]
    rev = report.get("reversal")
    if rev is not None:
        rows.append(
            {
                "detector": f"trigger reversal ({rev['kind']}, Neural Cleanse)",
                "measure": "anomaly index of the smallest reversed trigger",
                "class": rev["suspected_target"],
                "score": rev["anomaly_index"],
                "cut": rev["cut"],
                "flagged": rev["anomaly_index"] > rev["cut"],
                "lower_flags": False,
                "decides": True,
            }
        )
    if finder is not None and "ratio" in finder:
        # a measure in the band above the cut, flagged because the sensitivity scan names the same class, is
        # judged against the band's edge
        band = finder.get("corroborated", False)
        rows.append(
            {
                "detector": "reference model (purify's suspect finder)",
                "measure": "the class's reversed trigger over the same trigger on a model trained on the clean "
                "split alone"
                + (", over the median class's" if finder.get("rule") == "relative" else "")
                + " (smaller is more suspicious)"
                + (
                    "; above the cut, within the band where the sensitivity scan naming the same class counts"
                    if band
                    else ""
                ),
                "class": finder["suspected_target"],
                "score": finder["ratio"],
                "cut": finder["corroborated_cut"] if band else finder["cut"],
                "flagged": band or finder["ratio"] <= finder["cut"],
                "lower_flags": True,
                "decides": True,
            }
        )
    for r in rows:
        r["score_over_cut"] = r["score"] / r["cut"] if r["cut"] > 0 else None
        if r["lower_flags"]:
            r["strength"] = r["cut"] / r["score"] if r["score"] > 0 else math.inf
        else:
            r["strength"] = r["score_over_cut"] or 0.0
    return rows


def verdict_sentence(report: dict[str, Any]) -> str:
    """The verdict in one sentence, with the deciding detector's class and how far it is from its cut."""
    rows = [r for r in report["evidence"] if r["decides"]]
    flagged = [r for r in rows if r["flagged"]]
    if flagged:
        top = max(flagged, key=lambda r: r["strength"])
        return (
            f"Suspicious: the {top['detector']} detector points at class {top['class']} with a score of "
            f"{top['score']:.3g}, {top['score_over_cut']:.0%} of its cut {top['cut']:.3g}"
            + (" (at or under the cut flags)" if top["lower_flags"] else "")
            + (f" ({len(flagged)} of {len(rows)} detectors flag the model)." if len(rows) > 1 else ".")
        )
    top = max(rows, key=lambda r: r["strength"])
    return (
        f"No backdoor symptom found: every detector stayed on the clean side of its cut (closest: "
        f"{top['detector']}, class {top['class']}, {top['score_over_cut']:.0%} of its cut)."
    )


def _reversal_config(cfg: ScanRunConfig) -> Any:
    """The reversal settings of both reversal detectors: the finder's (purify's suspect step, whose cut was
    measured with them), with ``cfg.reversal_steps`` steps per class."""
    return replace(finder_scan_config(get_recipe("default").anp.batch_size), steps=cfg.reversal_steps)


def _picture(loaded: LoadedModel, clean: ArrayData, cfg: ScanRunConfig, target: int, kind: str) -> dict[str, Any]:
    """The trigger reversed to ``target`` (``kind``) and a picture of it: mask, pattern and stamped clean images."""
    trig = reverse_trigger(
        loaded.model,
        clean,
        target,
        _reversal_config(cfg),
        generator=torch.Generator().manual_seed(cfg.seed),
        kind=kind,
    )
    others = to_float(clean.x[clean.y != target][:4])
    figure = reversed_trigger_png(
        trig,
        others,
        title=f"trigger reversed to class {target} ({kind}): success {trig.success_rate:.0%} on the clean split",
    )
    return {
        "trigger": {**trig.to_dict(), "mask": trig.mask.squeeze(0).tolist(), "pattern": trig.pattern.tolist()},
        "figure_png": figure,
    }


def _reversal(loaded: LoadedModel, clean: ArrayData, cfg: ScanRunConfig, rs: dict[str, Any]) -> dict[str, Any]:
    """Neural Cleanse's detector (the reversal scan ``rs`` over the stamps, patch and blend, whatever else the
    finder's scan reversed), and a picture of the trigger to the class it names."""
    nc = restrict_kinds(rs, TRIGGER_KINDS)
    return {**nc, "cut": cfg.anomaly_cut, **_picture(loaded, clean, cfg, nc["suspected_target"], nc["kind"])}


def _finder(
    loaded: LoadedModel, clean: ArrayData, cfg: ScanRunConfig, result: ScanResult, rs: dict[str, Any]
) -> dict[str, Any]:
    """Purify's suspect finder on the clean split: the classes the sensitivity scan and the reversal name, judged
    against a reference model trained on the clean split alone (:func:`~pruneguard.scan.find_suspect`), with the
    default recipe's cut; a picture of the suspect's trigger (the kind with the smaller ratio)."""
    recipe = get_recipe("default")
    finding = suspect_step(
        recipe, loaded.model, clean, loaded.meta, cfg.seed, sensitivity=sensitivity_record(result), reversal=rs
    )
    vote = finding.record["vote"]
    target = int(vote["suspected_target"])
    kind = vote["kind"]
    return {
        "suspected_target": target,
        "evidence": finding.evidence,
        "reasons": finding.reasons,
        "ratio": vote["reference"]["measure"],
        "rule": vote["rule"],
        "sensitivity_evidence": recipe.suspect.sensitivity_evidence,
        "cut": vote["reference"]["cut"],
        "corroborated": bool(vote.get("corroborated", False)),
        "corroborated_cut": vote["reference"].get("corroborated_cut"),
        "kind": kind,
        "candidates": vote["candidates"],
        "decided_by": vote["decided_by"],
        "reference": vote["reference"],
        **_picture(loaded, clean, cfg, target, kind),
    }


def scan_measurements(report: dict[str, Any]) -> dict[str, Any]:
    """What a policy can check after a scan: ``scan_score`` and ``flagged_by`` (the detectors that flag the
    model); other rules fail as not measured."""
    flagged = [r["detector"] for r in report["evidence"] if r["flagged"] and r["decides"]]
    return {"scan_score": report["score"], "flagged_by": flagged}


def scan(
    cfg: ScanRunConfig,
    *,
    policy: Policy | None = None,
    progress: bool = False,
    loaded: LoadedModel | None = None,
) -> dict[str, Any]:
    """Scan ``cfg.model`` and return the report (a JSON-ready dict); nothing is written. The model is not modified.

    With ``policy``, the report gets a ``policy`` section (see :func:`pruneguard.policy.policy_record`).
    """
    started, t0 = now_iso(), time.perf_counter()
    loaded = loaded or load_for_defense(
        cfg.model,
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        description=cfg.description(),
        trust_pickle=cfg.trust_pickle,
    )
    loaded = replace(loaded, model=on_device(loaded.model, resolve_device(cfg.device)))
    clean, clean_info = draw_clean_split(
        loaded, clean_fraction=cfg.clean_fraction, clean_samples=cfg.clean_samples, seed=cfg.seed
    )
    scan_cfg = cfg.scan_config()
    clean_accuracy = evaluate_accuracy(loaded.model, clean)
    result = scan_model(loaded.model, clean, scan_cfg, progress=progress)
    images = clean.x.dim() == 4
    if cfg.reversal and not images:
        raise ConfigError(f"--reversal needs images; {loaded.dataset} has inputs of shape {tuple(clean.x.shape[1:])}")
    rs = (
        # the kinds the default recipe's finder reverses: the finder below reads this scan
        reversal_scan(
            loaded.model, clean, _reversal_config(cfg), kinds=reversal_kinds(get_recipe("default")), seed=cfg.seed
        )
        if images and (cfg.reversal or cfg.finder)
        else None
    )
    reversal = _reversal(loaded, clean, cfg, rs) if cfg.reversal and rs is not None else None
    finder: dict[str, Any] | None = None
    if cfg.finder:
        finder = (
            _finder(loaded, clean, cfg, result, rs)
            if rs is not None
            else {"skipped": f"the finder reverses image triggers; {loaded.dataset} has no images"}
        )
    target = result.suspected_target
    classes = loaded.info.classes
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "model": str(cfg.model),
        "model_sha256": loaded.sha256,
        "dataset": loaded.dataset,
        **clean_info,
        "clean_split_accuracy": clean_accuracy,
        "verdict": result.verdict,
        "score": result.score,
        "threshold": result.threshold,
        "suspected_target": target,
        "suspected_target_name": classes[target] if target is not None and target < len(classes) else None,
        "target_share": result.target_share,
        "baseline_error_rate": result.baseline_error_rate,
        "errors_by_class": result.errors_by_class,
        "curve": result.curve,
        "neurons": result.neurons,
        "num_classes": result.num_classes,
        "scan": {**asdict(scan_cfg), "eps": list(scan_cfg.eps)},
        "scan_seconds": result.seconds,
        "reversal": reversal,
        "finder": finder,
        "seconds": time.perf_counter() - t0,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "device": str(next(loaded.model.parameters()).device),
        "started": started,
        "finished": now_iso(),
    }
    report["evidence"] = _evidence(report)
    report["verdict"] = "suspicious" if any(r["flagged"] and r["decides"] for r in report["evidence"]) else "clean"
    report["verdict_sentence"] = verdict_sentence(report)
    if policy is not None:
        report["policy"] = policy_record(evaluate_policy(policy, scan_measurements(report)), cfg.policy)
    logger.info("scan: score %.4f (%s), suspected target %s", result.score, result.verdict, target)
    return report


def write_scan_outputs(cfg: ScanRunConfig, report: dict[str, Any]) -> Path:
    """Write ``report.json``, ``report.html`` and ``config.yaml`` into ``cfg.out``; return the JSON path."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.out / "report.json", report)
    atomic_write_text(cfg.out / "report.html", render_scan_html(report))
    atomic_write_text(cfg.out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return cfg.out / "report.json"
