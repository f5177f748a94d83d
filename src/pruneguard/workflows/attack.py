"""The attack job: one registered evasion attack against a model file, on a sample of its dataset's test split.

Also the pieces the harden job shares: where attacks run (:class:`AttackSpace`: [0, 1] images, or a tabular
model's :class:`~pruneguard.evaluation.robustness.FeatureBox` with ``eps`` in standard deviations), test
samples, and :func:`load_hardened`, which loads any pruneguard model file including structured-pruned ones.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from pruneguard.attacks.base import ATTACKS
from pruneguard.attacks.evasion import TransferAttack
from pruneguard.config_harden import AttackRunConfig
from pruneguard.data.datasets import load_dataset
from pruneguard.data.splits import stratified_sample
from pruneguard.data.tensors import ArrayData, to_float
from pruneguard.errors import ConfigError, IncompatibleModelError, UnsafeModelError
from pruneguard.evaluation.feature_box import FeatureBox
from pruneguard.evaluation.robustness import forward_twice, run_attack
from pruneguard.metrics.robustness import flag_nondeterministic, flag_zero_gradients, input_gradient_norms
from pruneguard.models.io import ModelMeta, load_model, read_meta
from pruneguard.pruning.base import PruningPlan
from pruneguard.pruning.structured_iterative import replay_channel_plans
from pruneguard.reports.attack_html import render_attack_html
from pruneguard.reports.plots import adversarial_png
from pruneguard.reports.provenance import git_commit, now_iso, versions
from pruneguard.utils.device import resolve_device
from pruneguard.utils.io import atomic_write_text, sha256_file
from pruneguard.utils.seed import make_generator
from pruneguard.workflows.common import LoadedModel, check_fits, describe_model, file_metadata, on_device

__all__ = [
    "ATTACK_SCHEMA",
    "AttackSpace",
    "attack_space",
    "eval_sample",
    "load_hardened",
    "load_evaluated",
    "build_attack",
    "attack_job",
    "write_attack_report",
]

logger = logging.getLogger(__name__)
ATTACK_SCHEMA = "pruneguard.attack/1"
_OPTION_FIELDS = {"steps": "steps", "step_size": "step_size", "restarts": "restarts", "queries": "n_queries"}


@dataclass
class AttackSpace:
    """Where attacks run: images in [0, 1] (``box=None``) or a tabular model's standardised unit box."""

    box: FeatureBox | None = None

    @property
    def eps_unit(self) -> float:
        """One attack-space unit in the user's eps units (pixels: 1; tabular: the box width in std units)."""
        return 1.0 if self.box is None else self.box.width

    def view(self, model: nn.Module) -> nn.Module:
        return model if self.box is None else self.box.wrap(model)

    def bounds(self) -> tuple[float | Tensor, float | Tensor]:
        """The gradient attacks' box: [0, 1], or every feature's data range (per-feature tensors)."""
        return (0.0, 1.0) if self.box is None else self.box.unit_bounds()

    def inputs(self, x: Tensor) -> Tensor:
        return to_float(x) if self.box is None else self.box.to_unit(x)

    def describe(self, eps: float, norm: str) -> dict[str, Any]:
        if self.box is None:
            return {"space": "inputs in [0, 1]", "eps": eps, "norm": norm}
        return {
            "space": "standardised features (the model's Normalize mean/std), each within the data's [min, max]",
            "eps": eps,
            "eps_units": "standard deviations of each feature",
            "norm": norm,
            "box_width_std": self.box.width,
            "eps_raw_per_feature": [eps * float(s) for s in self.box.std],
        }


def attack_space(model: nn.Module, kind: str, *data: Tensor) -> AttackSpace:
    """The attack space for a model on ``kind`` data; tabular bounds come from the raw rows of ``data``."""
    return AttackSpace(FeatureBox.for_model(model, *data) if kind == "tabular" else None)


def eval_sample(data: ArrayData, n: int, seed: int) -> ArrayData:
    """A stratified, seeded sample of ``n`` rows (all rows when ``n >= len(data)``)."""
    if n >= len(data):
        return data
    return data.subset(stratified_sample(data.y, n, generator=torch.Generator().manual_seed(seed)))


def load_hardened(
    path: str | Path, *, meta: ModelMeta | None = None, trust_pickle: bool = False
) -> tuple[nn.Module, ModelMeta]:
    """Load a model file; a structured-pruned file (``meta.extra["structured"]``) is rebuilt from its plans.

    ``meta`` (from the model-description options, see :func:`pruneguard.workflows.common.describe_model`) wins
    over the file's own metadata. A structured model is stored as its state dict plus ``extra["structured"] =
    {"plans": [...], "remaining": {...}}``: the dense architecture is built from the metadata, the channel plans
    are replayed in order (``replay_channel_plans``) and the state dict is loaded into the result. Returns the
    model in eval mode.
    """
    path = Path(path)
    file_meta = read_meta(path) if path.suffix == ".safetensors" and path.is_file() else None
    use = meta or file_meta
    structured = use.extra.get("structured") if use is not None else None
    if use is None or not structured:
        return load_model(path, meta=meta, trust_pickle=trust_pickle)
    if meta is None and ":" in use.arch and not trust_pickle:
        raise UnsafeModelError(
            f"model file {path} names the user architecture {use.arch!r}, which would import and run code; "
            "refused. Give it as --arch on the command line, or pass --trust-pickle if you trust its source"
        )
    try:
        plans = [PruningPlan.from_dict(d) for d in structured["plans"]]
        model = replay_channel_plans(use.build(), plans, torch.zeros(2, *use.input_shape))
        model.load_state_dict(load_file(str(path)), strict=True)
    except (KeyError, TypeError, RuntimeError, SafetensorError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IncompatibleModelError(f"model file {path}: the structured model does not rebuild: {first}") from None
    return model.eval(), use


def load_evaluated(
    path: Path,
    *,
    dataset: str | None,
    data_dir: Path | None,
    description: dict[str, Any] | None = None,
    trust_pickle: bool = False,
) -> LoadedModel:
    """A model file (dense, masked or structured) with the registered dataset it is used with.

    ``description``: the model-description options (see :func:`pruneguard.workflows.common.describe_model`).
    """
    meta = describe_model(description, dataset=dataset, file_meta=file_metadata(path))
    model, meta = load_hardened(path, meta=meta, trust_pickle=trust_pickle)
    name = dataset or meta.dataset
    if name is None:
        raise ConfigError("--dataset is required: the model file does not name the dataset it was trained on")
    info = check_fits(meta, name)
    train, test = load_dataset(name, "train", data_dir), load_dataset(name, "test", data_dir)
    return LoadedModel(model, meta, sha256_file(path), name, info, train, test)


def build_attack(
    name: str,
    *,
    eps: float,
    norm: str,
    options: dict[str, Any],
    source: nn.Module | None = None,
    bounds: tuple[float | Tensor, float | Tensor] = (0.0, 1.0),
) -> Any:
    """An evasion attack from the registry; ``options`` (``steps``, ``step_size``, ``restarts``, ``queries``,
    ``version``; ``None`` = not given) must be parameters the attack takes. PGD's default step is
    ``2.5 * eps / steps``; PGD stops on each example once it is fooled (``early_stop``). ``transfer`` runs PGD
    with these options on ``source``. ``bounds`` is the box of the gradient attacks (FGSM, PGD; per-feature
    tensors allowed); the others run in [0, 1]."""
    if ATTACKS.meta(name).get("kind") != "evasion" or name == "patch":
        accepted = [n for n in ATTACKS.names() if ATTACKS.meta(n).get("kind") == "evasion" and n != "patch"]
        raise ConfigError(f"--attack={name!r} is not accepted here; accepted: {', '.join(accepted)}")
    if name == "transfer":
        if source is None:
            raise ConfigError("--attack transfer needs --source (the surrogate model)")
        inner = build_attack("pgd", eps=eps, norm=norm, options=options, bounds=bounds)
        # full steps on the surrogate: stopping at its first fooled iterate would make weaker transfer examples
        return TransferAttack(source=source, attack=dataclasses.replace(inner, early_stop=False))
    fields = {f.name: f for f in dataclasses.fields(ATTACKS.get(name))}
    params: dict[str, Any] = {"eps": eps}
    if "norm" in fields:
        params["norm"] = norm
    elif norm != "linf":
        raise ConfigError(f"--norm={norm} is not accepted by --attack={name}; it is L-inf only")
    for option, value in options.items():
        key = _OPTION_FIELDS.get(option, option)
        if value is None:
            continue
        if key not in fields:
            raise ConfigError(f"--{option.replace('_', '-')}={value} is not a parameter of --attack={name}")
        params[key] = value
    if name in ("fgsm", "pgd"):
        params["clip_min"], params["clip_max"] = bounds
    if name == "pgd" and "step_size" not in params:
        params["step_size"] = 2.5 * eps / int(params.get("steps", fields["steps"].default))
    if name == "pgd":  # the examples only score this model: stop on each one once it is fooled
        params["early_stop"] = True
    return ATTACKS.create(name, **params)


def _params(attack: Any) -> dict[str, Any]:
    if isinstance(attack, TransferAttack):
        return {"attack": attack.attack.name, **_params(attack.attack)}
    return {
        f.name: getattr(attack, f.name) for f in dataclasses.fields(attack) if f.name not in ("clip_min", "clip_max")
    }


def attack_job(cfg: AttackRunConfig) -> dict[str, Any]:
    """Attack ``cfg.model`` with ``cfg.attack``; return the JSON-ready result (nothing is written)."""
    started, t0 = now_iso(), time.perf_counter()
    loaded = load_evaluated(
        cfg.model,
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        description=cfg.description(),
        trust_pickle=cfg.trust_pickle,
    )
    device = resolve_device(cfg.device)
    if device.type != "cpu" and loaded.info.kind == "tabular":  # the feature box and its bounds live on the CPU
        raise ConfigError(f"--device={cfg.device!r}: tabular data runs on the CPU only; accepted: --device cpu")
    space = attack_space(loaded.model, loaded.info.kind, loaded.train.x, loaded.test.x)
    test = eval_sample(loaded.test, cfg.n_samples, cfg.seed)
    x, y = space.inputs(test.x).to(device), test.y.to(device)
    model = space.view(on_device(loaded.model, device))
    source = None
    if cfg.source is not None:
        src, _ = load_hardened(cfg.source, trust_pickle=cfg.trust_pickle)
        source = space.view(on_device(src, device))
    options = {
        "steps": cfg.steps,
        "step_size": None if cfg.step_size is None else cfg.step_size / space.eps_unit,
        "restarts": cfg.restarts,
        "queries": cfg.queries,
        "version": cfg.version,
    }
    attack = build_attack(
        cfg.attack, eps=cfg.eps / space.eps_unit, norm=cfg.norm, options=options, source=source, bounds=space.bounds()
    )
    result, x_adv = run_attack(
        model,
        attack,
        x,
        y,
        name=cfg.attack,
        norm=cfg.norm,
        batch_size=cfg.batch_size,
        generator=make_generator(cfg.seed),
    )
    head = slice(0, min(len(x), cfg.batch_size))
    flags = [
        flag_zero_gradients(input_gradient_norms(model, x[head], y[head], norm=cfg.norm)),
        flag_nondeterministic(*forward_twice(model, x[head])),
    ]
    logger.info("%s: clean %.4f, robust %.4f", cfg.attack, result.clean_accuracy, result.robust_accuracy)
    return {
        "schema": ATTACK_SCHEMA,
        "model": str(cfg.model),
        "model_sha256": loaded.sha256,
        "dataset": loaded.dataset,
        "attack": {
            "name": cfg.attack,
            "params": _params(attack),
            "source": None if cfg.source is None else str(cfg.source),
        },
        "threat_model": space.describe(cfg.eps, cfg.norm),
        "n_samples": result.n,
        "clean_accuracy": result.clean_accuracy,
        "robust_accuracy": result.robust_accuracy,
        "attack_success_rate": result.success_rate,
        "mean_perturbation": result.mean_perturbation * space.eps_unit,
        "attack_seconds": result.seconds,
        "checks": ["zero_gradients", "nondeterministic"],
        "flags": [f.to_dict() for f in flags if f is not None],
        "data_kind": loaded.info.kind,
        "examples": None if loaded.info.kind == "tabular" else _examples(model, x, y, x_adv),
        "seconds": time.perf_counter() - t0,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "device": str(x.device),
        "started": started,
        "finished": now_iso(),
    }


_SHOWN = 4  # adversarial examples pictured in the report


@torch.no_grad()
def _examples(model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor) -> dict[str, Any]:
    """A few test images beside their adversarial versions, for the report: the attack's first successes
    (clean prediction right, adversarial wrong), then, when there are fewer, the first images it failed on."""
    fooled: list[int] = []
    for start in range(0, len(x), 256):  # predict only until enough successes are found
        s = slice(start, start + 256)
        hit = (model(x[s]).argmax(1) == y[s]) & (model(x_adv[s]).argmax(1) != y[s])
        fooled += [start + int(i) for i in hit.nonzero().flatten()]
        if len(fooled) >= _SHOWN:
            break
    others = [i for i in range(min(len(x), 2 * _SHOWN)) if i not in fooled]
    idx = torch.tensor((fooled + others)[:_SHOWN], dtype=torch.long, device=x.device)
    clean, adv = x[idx], x_adv[idx]
    rows = [
        {"index": i, "label": label, "clean_prediction": p, "adversarial_prediction": q}
        for i, label, p, q in zip(
            idx.tolist(), y[idx].tolist(), model(clean).argmax(1).tolist(), model(adv).argmax(1).tolist(), strict=True
        )
    ]
    captions = [
        (f"label {r['label']}, predicted {r['clean_prediction']}", f"attacked, predicted {r['adversarial_prediction']}")
        for r in rows
    ]
    png = adversarial_png(clean.cpu().numpy(), adv.cpu().numpy(), captions, title="clean / attacked / change")
    return {"rows": rows, "figure_png": png}


def write_attack_report(out: Path, result: dict[str, Any]) -> None:
    """Write ``report.html`` (the attack's outcome first; see :mod:`pruneguard.reports.attack_html`) into ``out``."""
    atomic_write_text(out / "report.html", render_attack_html(result))
