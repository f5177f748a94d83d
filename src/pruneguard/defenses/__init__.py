"""Non-pruning defences and recipes, the baseline backdoor defences of the ANP paper (FT, Fine-Pruning, NAD) and
the later purifiers FT-SAM, SAU and I-BAU, all in the :data:`DEFENSES` registry with one signature."""

from pruneguard.defenses.fine_pruning import fine_pruning, last_conv_layer
from pruneguard.defenses.fine_tune import fine_tune_, zero_masks
from pruneguard.defenses.finetune_defense import finetune_defense
from pruneguard.defenses.nad import attention_layers, attention_loss, attention_map, nad
from pruneguard.defenses.registry import DEFENSES, FinePruningConfig, FTConfig, NADConfig, default_config, defend

# the modules below register their defence in DEFENSES on import
from pruneguard.defenses.ft_sam import FTSAMConfig, ft_sam  # isort: skip
from pruneguard.defenses.i_bau import IBAUConfig, i_bau  # isort: skip
from pruneguard.defenses.sau import SAUConfig, sau  # isort: skip

__all__ = [
    "DEFENSES",
    "FTConfig",
    "FTSAMConfig",
    "FinePruningConfig",
    "IBAUConfig",
    "NADConfig",
    "SAUConfig",
    "attention_layers",
    "attention_loss",
    "attention_map",
    "default_config",
    "defend",
    "fine_pruning",
    "fine_tune_",
    "finetune_defense",
    "ft_sam",
    "i_bau",
    "last_conv_layer",
    "nad",
    "sau",
    "zero_masks",
]
