"""Non-pruning defences and recipes, and the baseline backdoor defences of the ANP paper (FT, Fine-Pruning, NAD)."""

from pruneguard.defenses.fine_pruning import fine_pruning, last_conv_layer
from pruneguard.defenses.fine_tune import fine_tune_, zero_masks
from pruneguard.defenses.finetune_defense import finetune_defense
from pruneguard.defenses.nad import attention_layers, attention_loss, attention_map, nad

__all__ = [
    "attention_layers",
    "attention_loss",
    "attention_map",
    "fine_pruning",
    "fine_tune_",
    "finetune_defense",
    "last_conv_layer",
    "nad",
    "zero_masks",
]
