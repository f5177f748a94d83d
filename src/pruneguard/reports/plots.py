"""Matplotlib figures rendered to base64 PNG for self-contained HTML reports (formatting only)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

__all__ = ["line_plot", "histogram"]


def _png(fig: object) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    import matplotlib.pyplot as plt

    plt.close(fig)  # type: ignore[arg-type]
    return base64.b64encode(buf.getvalue()).decode("ascii")


def line_plot(
    x: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    vline: float | None = None,
    vlabel: str = "",
) -> str:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, ys in series.items():
        pts = [(a, b) for a, b in zip(x, ys, strict=False) if b is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
    if vline is not None:
        ax.axvline(vline, color="grey", linestyle="--", label=vlabel or None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def histogram(values: Sequence[float], *, bins: int, xlabel: str, title: str, vline: float | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.hist(list(values), bins=bins, color="#4C72B0")
    if vline is not None:
        ax.axvline(vline, color="#C44E52", linestyle="--", label=f"threshold {vline:.3f}")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("neurons")
    ax.set_title(title)
    ax.set_yscale("log")
    return _png(fig)
