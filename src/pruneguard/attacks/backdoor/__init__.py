"""Backdoor attacks (data poisoning) and their trigger functions, for images and tabular rows."""

from pruneguard.attacks.backdoor.badnets import BadNets
from pruneguard.attacks.backdoor.blend import Blend
from pruneguard.attacks.backdoor.faint_pattern import FaintPattern, smooth_pattern
from pruneguard.attacks.backdoor.input_aware import InputAware, InputAwareGenerator, train_input_aware
from pruneguard.attacks.backdoor.label_consistent import LabelConsistent, four_corner_trigger, train_clean_surrogate
from pruneguard.attacks.backdoor.poison import PoisonedData, poison_dataset, triggered_eval_set
from pruneguard.attacks.backdoor.random_patch import RandomPatch, random_connected_mask, stamp_mask
from pruneguard.attacks.backdoor.sig import SIG, add_signal, sinusoidal_signal
from pruneguard.attacks.backdoor.tabular import TabularCleanTrigger, TabularTrigger, rare_values, stamp_columns
from pruneguard.attacks.backdoor.thin_line import ThinLine, line_mask
from pruneguard.attacks.backdoor.triggers import apply_patch, blend, checkerboard, noise_pattern
from pruneguard.attacks.backdoor.trojan import Trojan, optimise_trojan_trigger
from pruneguard.attacks.backdoor.wanet import WaNet, warp, warping_grid

__all__ = [
    "BadNets",
    "Blend",
    "FaintPattern",
    "InputAware",
    "InputAwareGenerator",
    "LabelConsistent",
    "PoisonedData",
    "TabularCleanTrigger",
    "TabularTrigger",
    "RandomPatch",
    "SIG",
    "ThinLine",
    "Trojan",
    "WaNet",
    "add_signal",
    "apply_patch",
    "blend",
    "checkerboard",
    "four_corner_trigger",
    "line_mask",
    "noise_pattern",
    "optimise_trojan_trigger",
    "poison_dataset",
    "rare_values",
    "sinusoidal_signal",
    "stamp_columns",
    "random_connected_mask",
    "smooth_pattern",
    "stamp_mask",
    "train_clean_surrogate",
    "train_input_aware",
    "triggered_eval_set",
    "warp",
    "warping_grid",
]
