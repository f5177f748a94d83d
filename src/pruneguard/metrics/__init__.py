"""Pure metric functions."""

from pruneguard.metrics.classification import accuracy, attack_success_rate, class_kept, mean_kl, paired_change

__all__ = ["accuracy", "attack_success_rate", "class_kept", "mean_kl", "paired_change"]
