"""What the harden job runs on: the model (a file, or an MLP trained on a CSV), the fine-tuning part of the
training split, the defender's held-out split, the test sample and the attack space and protocol."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pruneguard.attacks.evasion._common import check_eps
from pruneguard.attacks.evasion.constraints import TabularConstraints, load_constraints
from pruneguard.config_harden import HardenConfig
from pruneguard.data.csv import load_csv
from pruneguard.data.datasets import DatasetInfo
from pruneguard.data.splits import holdout_split, indices_hash
from pruneguard.data.tensors import ArrayData
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.evaluation.robustness import RobustnessSpec
from pruneguard.metrics.imbalanced import IMBALANCE_THRESHOLD, minority_share
from pruneguard.models.fit import TrainConfig
from pruneguard.models.io import ModelMeta, save_model
from pruneguard.training.train import train_model
from pruneguard.utils.device import resolve_device
from pruneguard.utils.io import sha256_file
from pruneguard.workflows.attack import AttackSpace, attack_space, eval_sample, load_evaluated, load_hardened
from pruneguard.workflows.common import LoadedModel, draw_clean_split, on_device

__all__ = [
    "HardenData",
    "PositiveClass",
    "prepare_data",
    "positive_class",
    "robustness_spec",
    "save_dense",
    "DENSE_NAME",
]

logger = logging.getLogger(__name__)
DENSE_NAME = "dense.safetensors"


@dataclass
class HardenData:
    """Everything the job runs on; ``x_*`` are in attack space (see :class:`AttackSpace`)."""

    loaded: LoadedModel
    fit: ArrayData
    clean: ArrayData
    space: AttackSpace
    x_test: Tensor
    y_test: Tensor
    x_sel: Tensor
    y_sel: Tensor
    sources: dict[str, Any]
    feature_names: list[str] | None = None
    positive: PositiveClass | None = None


@dataclass(frozen=True)
class PositiveClass:
    """The rare class of tabular data and what the positive-class evaluation runs on: the whole test split
    (raw rows; every positive counts), the operating ``fpr`` and the attacker's constraints."""

    index: int
    label: str
    minority_share: float
    fpr: float
    constraints: TabularConstraints
    x_test: Tensor
    y_test: Tensor
    data_range: tuple[Tensor, Tensor]


def _csv_model(cfg: HardenConfig, csv: Path, train: ArrayData, test: ArrayData, names: list[str]) -> LoadedModel:
    """The CSV's model: ``--model`` checked against the CSV, or a small MLP trained here (its ``sha256`` empty
    until :func:`save_dense` writes it)."""
    csv_id = {"sha256": sha256_file(csv), "label": cfg.label, "test_fraction": cfg.test_fraction, "seed": cfg.seed}
    k, f = train.num_classes, len(names)
    if cfg.model is not None:
        model, meta = load_hardened(cfg.model, trust_pickle=cfg.trust_pickle)
        if tuple(meta.input_shape) != (f,) or meta.num_classes != k:
            raise IncompatibleModelError(
                f"--model expects inputs {tuple(meta.input_shape)} and {meta.num_classes} classes but --csv gives "
                f"({f},) and {k}"
            )
        if meta.extra.get("csv") != csv_id and meta.holdout_indices:
            logger.warning("the model's held-out indices do not refer to this CSV split; ignoring them")
            meta = replace(meta, holdout_indices=None, holdout_hash=None)
        sha = sha256_file(cfg.model)
    else:
        fit_idx, held = holdout_split(train.y, cfg.holdout_fraction, generator=torch.Generator().manual_seed(cfg.seed))
        xf = train.x[fit_idx].float()
        meta = ModelMeta(
            arch="mlp",
            num_classes=k,
            input_shape=(f,),
            mean=tuple(xf.mean(0).tolist()),
            std=tuple(xf.std(0).clamp_min(1e-6).tolist()),
            dataset=f"csv:{csv.name}",
            holdout_indices=held.tolist(),
            holdout_hash=indices_hash(held),
            extra={"csv": csv_id, "features": names},
        )
        model = meta.build(seed=cfg.seed)
        tcfg = TrainConfig(cfg.train_epochs, min(cfg.batch_size, 64), crop_padding=0, hflip=False, seed=cfg.seed)
        train_model(model, train.subset(fit_idx), tcfg)
        sha = ""
    info = DatasetInfo(k, (f,), meta.mean, meta.std, train.classes, kind="tabular")
    return LoadedModel(model.eval(), meta, sha, meta.dataset or f"csv:{csv.name}", info, train, test)


def prepare_data(cfg: HardenConfig) -> HardenData:
    """Load the model and data; draw the defender's split, the fine-tuning part and the test sample.

    The model and the attack-space tensors go to ``cfg.device``. Off the CPU only image models are hardened, and
    without ``--quantize int8``: the int8 model and the tabular feature box run on the CPU only.
    """
    device = resolve_device(cfg.device)
    if device.type != "cpu" and (cfg.quantize is not None or cfg.csv is not None):
        raise ConfigError(
            f"--device={cfg.device!r} with --quantize or --csv is not accepted: int8 models and tabular data run "
            "on the CPU only; accepted: --device cpu"
        )
    names = None
    if cfg.csv is not None and cfg.label is not None:
        train, test, names = load_csv(cfg.csv, cfg.label, test_fraction=cfg.test_fraction, seed=cfg.seed)
        loaded = _csv_model(cfg, cfg.csv, train, test, names)
    elif cfg.model is not None:
        loaded = load_evaluated(
            cfg.model,
            dataset=cfg.dataset,
            data_dir=cfg.data_dir,
            description=cfg.description(),
            trust_pickle=cfg.trust_pickle,
        )
    else:
        raise ConfigError("--model is required (only --csv can train a small MLP itself)")
    if device.type != "cpu" and loaded.info.kind == "tabular":
        raise ConfigError(f"--device={cfg.device!r}: tabular data runs on the CPU only; accepted: --device cpu")
    loaded = replace(loaded, model=on_device(loaded.model, device))
    if cfg.feature_keep is not None and loaded.info.kind != "tabular":
        raise ConfigError(f"--feature-keep={cfg.feature_keep} is for tabular data; {loaded.dataset} holds images")
    held = loaded.meta.holdout_indices or []
    pool = len(held) if held else len(loaded.train)
    clean, clean_info = draw_clean_split(
        loaded, clean_fraction=None, clean_samples=max(2, min(cfg.clean_samples, pool)), seed=cfg.seed
    )
    keep = torch.ones(len(loaded.train), dtype=torch.bool)
    keep[torch.tensor(held, dtype=torch.long)] = False
    fit = loaded.train.subset(torch.nonzero(keep).flatten(), name=f"{loaded.dataset}:fit")
    space = attack_space(loaded.model, loaded.info.kind, loaded.train.x, loaded.test.x)
    test = eval_sample(loaded.test, cfg.n_eval, cfg.seed)
    sel = clean.subset(torch.arange(min(len(clean), cfg.n_eval)))
    sources = {
        **clean_info,
        "eval": f"{len(test)} test samples (stratified, seed {cfg.seed})",
        "selection": f"{len(sel)} samples of the defender's split (collapse decisions)",
        "finetune": "training split minus the model's held-out indices"
        if held
        else "whole training split (the model records no held-out indices)",
        "finetune_samples": len(fit),
    }
    pos = positive_class(cfg, loaded, names)
    return HardenData(
        loaded,
        fit,
        clean,
        space,
        space.inputs(test.x).to(device),
        test.y.to(device),
        space.inputs(sel.x).to(device),
        sel.y.to(device),
        sources,
        names,
        pos,
    )


def save_dense(cfg: HardenConfig, data: HardenData) -> HardenData:
    """Write the model trained from ``--csv`` (its hash still empty) as ``DENSE_NAME`` in ``cfg.out``, its hash into
    ``data``; called once every option has been checked, so that bad input (exit 2) leaves no file. A model given
    with ``--model`` is not copied."""
    if data.loaded.sha256:
        return data
    cfg.out.mkdir(parents=True, exist_ok=True)
    sha = save_model(cfg.out / DENSE_NAME, data.loaded.model, data.loaded.meta)
    return replace(data, loaded=replace(data.loaded, sha256=sha))


def positive_class(cfg: HardenConfig, loaded: LoadedModel, names: list[str] | None) -> PositiveClass | None:
    """The positive class of tabular data: ``--positive-label``, else the rarest class when it is under 20% of
    the training rows (``None``: balanced data or images, no positive-class evaluation)."""
    if loaded.info.kind != "tabular":
        if cfg.positive_label is not None or cfg.constraints is not None:
            raise ConfigError("--positive-label and --constraints are for tabular data (--csv)")
        return None
    y = loaded.train.y
    share = minority_share(y)
    classes = list(loaded.train.classes) or [str(i) for i in range(loaded.train.num_classes)]
    if cfg.positive_label is not None:
        if cfg.positive_label not in classes:
            raise ConfigError(f"--positive-label={cfg.positive_label!r} is not a class; classes: {', '.join(classes)}")
        index = classes.index(cfg.positive_label)
    elif share < IMBALANCE_THRESHOLD:
        counts = torch.bincount(y, minlength=loaded.train.num_classes)
        counts[counts == 0] = len(y) + 1
        index = int(counts.argmin())
    else:
        return None
    feats = names or [str(i) for i in range(loaded.train.input_shape[0])]
    if cfg.constraints is not None:
        constraints = load_constraints(cfg.constraints, feats)
    else:
        constraints = TabularConstraints(num_features=len(feats), names=tuple(feats))
    x_all = torch.cat([loaded.train.x.float(), loaded.test.x.float()])
    rng = (x_all.min(0).values, x_all.max(0).values)
    return PositiveClass(index, classes[index], share, cfg.fpr, constraints, loaded.test.x.float(), loaded.test.y, rng)


def robustness_spec(cfg: HardenConfig, data: HardenData) -> RobustnessSpec:
    """The evaluation protocol in attack-space units; the sweep ends at a budget that breaks any model."""
    unit, dim = data.space.eps_unit, data.x_test[0].numel()
    large = 0.5 if cfg.norm == "linf" else 0.5 * math.sqrt(dim)
    eps = cfg.eps / unit
    check_eps(eps, cfg.norm, *data.space.bounds())  # before anything is written: bad input leaves no file
    sweep = [e / unit for e in cfg.eps_sweep] if cfg.eps_sweep else [min(m * eps, large) for m in (0.25, 0.5, 1, 2, 4)]
    lo, hi = data.space.bounds()
    return RobustnessSpec(
        eps=eps,
        clip_min=lo,
        clip_max=hi,
        norm=cfg.norm,
        steps=cfg.pgd_steps,
        square_queries=cfg.square_queries or None,
        sweep=tuple(sorted({*sweep, large})),
        eps_unit=unit,
        seed=cfg.seed,
    )
