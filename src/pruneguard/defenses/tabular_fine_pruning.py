"""Fine-Pruning for MLPs (Liu et al. 2018, https://arxiv.org/abs/1805.12185), with a score that suits rare
classes.

The image version (:mod:`pruneguard.defenses.fine_pruning`) prunes the last conv layer; an MLP's counterpart is
its last hidden ``Linear`` and the BatchNorm that follows it. Neurons are ranked by their mean activation on
the defender's clean rows (dormant first) and pruned while ``score(model)`` stays within ``max_drop`` of the
unpruned model's; at 0.2% positives accuracy cannot see a lost fraud detector, so the caller passes e.g. the
positive class's PR-AUC on the clean split. The pruned copy is then fine-tuned on the clean rows with the pruned
neurons held at zero.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from pruneguard.data.tensors import ArrayData
from pruneguard.defenses.fine_pruning import prune_channels_
from pruneguard.defenses.fine_tune import fine_tune_
from pruneguard.errors import ConfigError, IncompatibleModelError
from pruneguard.models.fit import TrainConfig
from pruneguard.utils.modes import eval_mode

__all__ = ["last_hidden_linear", "fine_pruning_mlp"]

logger = logging.getLogger(__name__)


def last_hidden_linear(model: nn.Module) -> tuple[str, str | None]:
    """The last ``Linear`` before the classifier and the ``BatchNorm1d`` right after it (or ``None``), by
    module order (an MLP built as a sequence)."""
    mods = list(model.named_modules())
    linears = [i for i, (_, m) in enumerate(mods) if isinstance(m, nn.Linear)]
    if len(linears) < 2:
        raise IncompatibleModelError("fine-pruning an MLP needs a hidden Linear layer before the classifier")
    i = linears[-2]
    width = mods[i][1].out_features  # type: ignore[union-attr]
    norm = next(
        (n for n, m in mods[i + 1 : linears[-1]] if isinstance(m, nn.BatchNorm1d) and m.num_features == width), None
    )
    return mods[i][0], norm


@torch.no_grad()
def _activations(model: nn.Module, x: Tensor, module: str) -> Tensor:
    acts: list[Tensor] = []
    handle = dict(model.named_modules())[module].register_forward_hook(lambda m, i, o: acts.append(o.relu().sum(0)))
    try:
        with eval_mode(model):
            for s in range(0, len(x), 4096):
                model(x[s : s + 4096])
    finally:
        handle.remove()
    return torch.stack(acts).sum(0) / max(1, len(x))


def fine_pruning_mlp(
    model: nn.Module,
    clean: ArrayData,
    score: Callable[[nn.Module], float],
    *,
    max_drop: float = 0.05,
    max_ratio: float = 0.9,
    epochs: int = 5,
    lr: float = 0.01,
    batch_size: int = 256,
    seed: int = 0,
) -> tuple[nn.Module, dict[str, Any]]:
    """Fine-Pruning on a copy of ``model`` (never modified); returns the defended copy and what was pruned.

    ``score(model) -> float`` (higher is better, e.g. PR-AUC on the clean split) decides how far pruning goes.
    """
    if not 0.0 <= max_drop < 1.0 or not 0.0 < max_ratio < 1.0:
        raise ConfigError(f"max_drop={max_drop}, max_ratio={max_ratio} are not accepted; accepted: [0, 1), (0, 1)")
    if not (isinstance(epochs, int) and epochs >= 0):
        raise ConfigError(f"epochs={epochs!r} is not accepted; accepted: an integer >= 0 (0: prune only)")
    layer, norm = last_hidden_linear(model)
    device = next(model.parameters()).device
    acts = _activations(model, clean.x.float().to(device), norm or layer)
    order = torch.argsort(acts.cpu(), stable=True)
    base, kept = score(model), 0
    history = [{"pruned": 0, "score": base}]
    work = copy.deepcopy(model)
    for count in range(1, int(max_ratio * len(order)) + 1):
        prune_channels_(work, layer, norm, order[kept:count])
        value = score(work)
        history.append({"pruned": count, "score": value})
        if base - value > max_drop:
            break
        kept = count
    defended = copy.deepcopy(model)
    masks = prune_channels_(defended, layer, norm, order[:kept].sort().values)
    if epochs > 0:
        cfg = TrainConfig(epochs, batch_size, lr=lr, crop_padding=0, hflip=False, seed=seed)
        fine_tune_(defended, clean, cfg, keep_zero=masks)
    logger.info("fine-pruning (MLP): %d/%d neurons of %s pruned", kept, len(order), layer)
    info = {
        "method": "fine_pruning_mlp",
        "layer": layer,
        "norm": norm,
        "neurons": len(order),
        "pruned": order[:kept].sort().values.tolist(),
        "score_before": base,
        "prune_history": history,
    }
    return defended.eval(), info
