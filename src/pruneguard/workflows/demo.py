"""The demo job: train a BadNets model on Fashion-MNIST, purify it with ANP on 1% clean data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pruneguard.config import PurifyConfig, TrainRunConfig
from pruneguard.workflows.purify import purify, write_purify_outputs
from pruneguard.workflows.train import MODEL_NAME, train_job

__all__ = ["run_demo", "DEMO_TRAIN", "DEMO_PURIFY"]

logger = logging.getLogger(__name__)

DEMO_TRAIN: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "arch": "small_cnn",
    "attack": "badnets",
    "poison_rate": 0.05,
    "target_label": 0,
    "epochs": 4,
}
# Targeted ANP (towards the class the neuron-sensitivity scan suspects) ranked the backdoor neurons of this small
# CNN far earlier than the paper's untargeted perturbation did; crop/flip of the clean batches is off for 28x28.
DEMO_PURIFY: dict[str, Any] = {
    "clean_fraction": 0.01,
    "eval_attack": "badnets",
    "target_label": 0,
    "anp_target": "auto",
    "augment": False,
    "iterations": 1000,
    "unlearn": True,
}


def run_demo(
    out: Path,
    *,
    data_dir: Path | None = None,
    seed: int = 0,
    progress: bool = False,
    train_overrides: dict[str, Any] | None = None,
    purify_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train into ``out/model`` and purify into ``out``; returns the purify report."""
    tcfg = TrainRunConfig(
        **{**DEMO_TRAIN, **(train_overrides or {}), "out": out / "model", "data_dir": data_dir, "seed": seed}
    )
    logger.info("demo: training a BadNets model on Fashion-MNIST")
    train_report, _ = train_job(tcfg, progress=progress)
    pcfg = PurifyConfig(
        **{
            **DEMO_PURIFY,
            **(purify_overrides or {}),
            "model": out / "model" / MODEL_NAME,
            "out": out,
            "data_dir": data_dir,
            "seed": seed,
        }
    )
    logger.info("demo: purifying with ANP")
    report, purified, meta = purify(pcfg, progress=progress)
    report["train"] = {k: train_report[k] for k in ("model_sha256", "test", "seconds", "attack")}
    write_purify_outputs(pcfg, report, purified, meta)
    return report
