"""Pruning: the Pruner protocol and plans, magnitude / channel / iterative pruning, ANP (neuron masks),
selection rules and the pruning curve."""

from pruneguard.pruning.anp import ANPConfig, ANPResult, anp_optimize, fast_iteration, mask_step, perturbation_step
from pruneguard.pruning.base import (
    PRUNERS,
    Pruner,
    PruningPlan,
    apply_plan_,
    layer_sparsity,
    make_permanent_,
    sparsity,
)
from pruneguard.pruning.iterative import PruneStepResult, linear_schedule, prune_finetune, step_schedule
from pruneguard.pruning.magnitude import MagnitudePruner, l1_scores
from pruneguard.pruning.neurons import NeuronGroup, NeuronReparam, find_neuron_groups, prune_neurons_
from pruneguard.pruning.selection import (
    auto_count,
    curve_counts,
    divergence_count,
    prune_order,
    pruning_curve,
    select_by_threshold,
    select_smallest,
)
from pruneguard.pruning.structured import ChannelPruner, channel_norm_scores, remove_channels

__all__ = [
    "ANPConfig",
    "ANPResult",
    "NeuronGroup",
    "NeuronReparam",
    "anp_optimize",
    "auto_count",
    "divergence_count",
    "fast_iteration",
    "curve_counts",
    "find_neuron_groups",
    "mask_step",
    "perturbation_step",
    "prune_neurons_",
    "prune_order",
    "pruning_curve",
    "select_by_threshold",
    "select_smallest",
    "PRUNERS",
    "ChannelPruner",
    "MagnitudePruner",
    "PruneStepResult",
    "Pruner",
    "PruningPlan",
    "apply_plan_",
    "channel_norm_scores",
    "l1_scores",
    "layer_sparsity",
    "linear_schedule",
    "make_permanent_",
    "prune_finetune",
    "remove_channels",
    "sparsity",
    "step_schedule",
]
