"""The small exception hierarchy of pruneguard."""

from __future__ import annotations

__all__ = ["PruneGuardError", "ConfigError", "UnknownNameError", "IncompatibleModelError", "UnsafeModelError"]


class PruneGuardError(Exception):
    """Base class of every error pruneguard raises on purpose."""


class ConfigError(PruneGuardError, ValueError):
    """A parameter or config value is outside what is accepted (bad user input)."""


class UnknownNameError(PruneGuardError, KeyError):
    """A registry lookup failed; the message lists the closest valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain sentence
        return str(self.args[0]) if self.args else ""


class IncompatibleModelError(PruneGuardError, ValueError):
    """A model file or model does not fit what it is used with (shape, classes, corrupt file)."""


class UnsafeModelError(IncompatibleModelError):
    """A model file would execute code when loaded (pickled objects) and was refused."""
