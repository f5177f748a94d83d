"""The train job: split off the held-out data, poison if asked, train, evaluate, save a model file."""

from __future__ import annotations

import logging
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors
from torch import nn

from pruneguard.attacks.base import ATTACKS
from pruneguard.config import TrainRunConfig
from pruneguard.data.datasets import dataset_info, load_dataset
from pruneguard.data.splits import holdout_split, indices_hash
from pruneguard.errors import ConfigError
from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr
from pruneguard.models.fit import TrainConfig
from pruneguard.models.io import ModelMeta, save_model
from pruneguard.reports.provenance import git_commit, now_iso, versions
from pruneguard.reports.train_html import render_train_html
from pruneguard.training.train import train_model
from pruneguard.utils.device import resolve_device, retune_threads
from pruneguard.utils.io import atomic_write, atomic_write_text, sha256_file
from pruneguard.workflows.common import trigger_set

__all__ = ["train_job", "write_train_report", "MODEL_NAME", "TRIGGER_NAME"]

logger = logging.getLogger(__name__)
MODEL_NAME = "model.safetensors"
TRIGGER_NAME = "trigger_net.safetensors"


def make_attack(cfg: TrainRunConfig, num_classes: int) -> Any:
    """The configured backdoor attack (None for a clean run); bad names or parameters are a ConfigError."""
    if cfg.attack is None:
        return None
    if not cfg.target_label < num_classes:
        raise ConfigError(f"--target-label={cfg.target_label} is outside [0, {num_classes - 1}]")
    if ATTACKS.meta(cfg.attack).get("kind") != "backdoor":
        raise ConfigError(f"--attack={cfg.attack!r} is not a backdoor attack")
    if cfg.attack_params:
        cls = ATTACKS.get(cfg.attack)
        accepted = [f.name for f in fields(cls) if f.init and f.name != "target_label"]
        unknown = sorted(set(cfg.attack_params) - set(accepted))
        if unknown:
            raise ConfigError(
                f"--attack-params names {', '.join(unknown)}, not a parameter of {cfg.attack}; "
                f"accepted: {', '.join(accepted)}"
            )
    try:
        return ATTACKS.create(cfg.attack, target_label=cfg.target_label, **cfg.attack_params)
    except ConfigError as exc:
        raise ConfigError(f"--attack-params: {exc}") from None


def train_job(cfg: TrainRunConfig, *, progress: bool = False) -> tuple[dict[str, Any], nn.Module]:
    """Train a model as configured and write ``model.safetensors`` (with held-out indices) into ``cfg.out``."""
    started, t0 = now_iso(), time.perf_counter()
    info = dataset_info(cfg.dataset)
    attack = make_attack(cfg, info.num_classes)
    train, test = (
        load_dataset(cfg.dataset, "train", cfg.data_dir),
        load_dataset(cfg.dataset, "test", cfg.data_dir),
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    train_idx, held = holdout_split(train.y, cfg.holdout_fraction, generator=gen)
    fit = train.subset(train_idx, name=f"{cfg.dataset}:fit")
    poison_info: dict[str, Any] | None = None
    hook = None
    if attack is not None and getattr(attack, "mode", None) == "joint":
        # the attacker controls the training (IAB): the victim learns together with the trigger generator
        hook = attack.joint_hook(fit, rate=cfg.poison_rate)
        poison_info = {"name": cfg.attack, "params": _params(attack), "rate": cfg.poison_rate, "poisoned": "joint"}
    elif attack is not None:
        poisoned = attack.poison(fit, rate=cfg.poison_rate, generator=gen)
        fit = poisoned.data
        poison_info = {
            "name": cfg.attack,
            "params": _params(attack),
            "rate": cfg.poison_rate,
            "poisoned": int(poisoned.poison_indices.numel()),
        }
    mean, std = info.mean, info.std
    if info.kind == "tabular":  # standardise features with training statistics (inside the model)
        xf = fit.x.float()
        mean, std = tuple(xf.mean(0).tolist()), tuple(xf.std(0).clamp_min(1e-6).tolist())
    kwargs: dict[str, Any] = {} if ":" in cfg.arch else {"width": cfg.width}
    meta = ModelMeta(
        arch=cfg.arch,
        num_classes=info.num_classes,
        input_shape=info.input_shape,
        mean=mean,
        std=std,
        kwargs=kwargs,
        dataset=cfg.dataset,
        holdout_indices=held.tolist(),
        holdout_hash=indices_hash(held),
        extra={"attack": poison_info} if poison_info else {},
    )
    # the initial weights are the seed's (drawn on the CPU), whatever the caller's RNG state and the device
    model = meta.build(seed=cfg.seed).to(resolve_device(cfg.device))
    image = len(info.input_shape) == 3
    tcfg = TrainConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        schedule=cfg.schedule,
        crop_padding=(max(1, info.input_shape[-1] // 14) if image and cfg.augment else 0),
        hflip=image and cfg.augment,
        seed=cfg.seed,
    )
    cfg.out.mkdir(parents=True, exist_ok=True)
    ckpt = cfg.out / "checkpoint.pt"
    if not cfg.resume:
        ckpt.unlink(missing_ok=True)
    retune_threads("training")
    result = train_model(model, fit, tcfg, checkpoint=ckpt, progress=progress, hook=hook)
    metrics: dict[str, Any] = {"accuracy": evaluate_accuracy(model, test), "asr": None}
    if attack is not None:
        metrics["asr"] = evaluate_asr(model, trigger_set(attack, test), attack.target_label)
    net = getattr(attack, "trigger_net_", None)
    if net is not None and poison_info is not None:  # a learned trigger (IAB): saved beside the model
        trig_path = cfg.out / TRIGGER_NAME
        blob = save_safetensors({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
        with atomic_write(trig_path, "wb") as fh:
            fh.write(blob)
        poison_info["trigger_net"] = {
            "file": TRIGGER_NAME,
            "sha256": sha256_file(trig_path),
            "channels": int(net.channels),
            "hidden": int(net.hidden),
        }
        meta = replace(meta, extra={"attack": poison_info})
    sha = save_model(cfg.out / MODEL_NAME, model, meta)
    report = {
        "schema": "pruneguard.train/1",
        "model": str(cfg.out / MODEL_NAME),
        "model_sha256": sha,
        "dataset": cfg.dataset,
        "arch": cfg.arch,
        "attack": poison_info,
        "test": metrics,
        "history": result.history,
        "holdout_samples": int(held.numel()),
        "holdout_hash": meta.holdout_hash,
        "seconds": time.perf_counter() - t0,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "device": str(next(model.parameters()).device),
        "started": started,
        "finished": now_iso(),
    }
    return report, model


def _params(attack: Any) -> dict[str, Any]:
    return {f.name: getattr(attack, f.name) for f in fields(attack)}


def write_train_report(out: Path, result: dict[str, Any]) -> None:
    """Write ``report.html`` (what was trained and how well, first; see :mod:`pruneguard.reports.train_html`)."""
    atomic_write_text(out / "report.html", render_train_html(result))
