"""pruneguard: harden neural networks by pruning (ANP backdoor purification, robustness evaluation, model intake)."""

from pruneguard import attacks, data, models, pruning  # noqa: F401  (registers the built-in entries)
from pruneguard.errors import (
    ConfigError,
    IncompatibleModelError,
    PruneGuardError,
    UnknownNameError,
    UnsafeModelError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "IncompatibleModelError",
    "PruneGuardError",
    "UnknownNameError",
    "UnsafeModelError",
    "__version__",
]
