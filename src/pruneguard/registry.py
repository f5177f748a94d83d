"""One generic registry reused by every capability (models, datasets, attacks, pruners)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pruneguard.errors import UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table with a decorator to fill it.

    Example:
        >>> MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
        >>> @MODELS.register("tiny")
        ... def tiny(num_classes: int = 10) -> nn.Module: ...
        >>> MODELS.create("tiny", num_classes=3)
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        if not name or name != name.lower() or " " in name:
            raise ValueError(f"{self.kind} name={name!r} must be non-empty lower_snake case")

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} name={name!r} is already registered")
            self._entries[name] = obj
            self._meta[name] = dict(meta)
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; accepted: {', '.join(sorted(self._entries))}{hint}"
            ) from None

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._meta[name])

    def create(self, name: str, **kwargs: Any) -> Any:
        factory = self.get(name)
        if not callable(factory):
            raise TypeError(f"{self.kind} {name!r} is not callable")
        return factory(**kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
