"""Progress bars: the only place tqdm is used. Off unless the caller enables them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["track"]

T = TypeVar("T")


def track(iterable: Iterable[T], *, desc: str = "", total: int | None = None, enabled: bool = False) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar on stderr when ``enabled``."""
    if not enabled:
        yield from iterable
        return
    yield from tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)
