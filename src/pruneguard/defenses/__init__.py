"""Non-pruning defences and recipes."""

from pruneguard.defenses.fine_tune import fine_tune_, zero_masks

__all__ = ["fine_tune_", "zero_masks"]
