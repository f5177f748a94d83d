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
# The default recipe on 1% clean data; the BadNets trigger and its target only measure the ASR (no step sees them).
DEMO_PURIFY: dict[str, Any] = {
    "clean_fraction": 0.01,
    "recipe": "default",
    "eval_attack": "badnets",
    "target_label": 0,
}


def run_demo(
    out: Path,
    *,
    data_dir: Path | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = False,
    train_overrides: dict[str, Any] | None = None,
    purify_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train into ``out/model`` and purify into ``out`` with the default recipe; returns the purify report.

    ``device`` is both jobs' (see :class:`pruneguard.config.RunConfig`); ``train_overrides``/``purify_overrides``
    change fields of the training and purify configs."""
    tcfg = TrainRunConfig(
        **{
            **DEMO_TRAIN,
            **(train_overrides or {}),
            "out": out / "model",
            "data_dir": data_dir,
            "seed": seed,
            "device": device,
        }
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
            "device": device,
        }
    )
    logger.info("demo: purifying with the %s recipe", pcfg.recipe.name)
    report, purified, meta = purify(pcfg, progress=progress)
    report["train"] = {k: train_report[k] for k in ("model_sha256", "test", "seconds", "attack")}
    write_purify_outputs(pcfg, report, purified, meta)
    return report
