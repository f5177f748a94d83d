"""Matplotlib figures rendered to base64 PNG for self-contained HTML reports (formatting only)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["line_plot", "histogram", "trigger_png", "data_uri"]


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


def data_uri(b64_png: str) -> str:
    """A base64 PNG as an inline ``data:`` URI (the page fetches nothing)."""
    return f"data:image/png;base64,{b64_png}"


def _chw_to_image(a: Any) -> Any:
    """``(C, H, W)`` in [0, 1] -> what ``imshow`` takes: ``(H, W)`` grey or ``(H, W, 3)`` colour."""
    import numpy as np

    a = np.clip(np.asarray(a, dtype=np.float32), 0.0, 1.0)
    if a.ndim == 2:
        return a
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))


def trigger_png(mask: Any, pattern: Any, images: Any, *, title: str, max_images: int = 4) -> str:
    """A reversed trigger and what it does, as a base64 PNG: the mask, the pattern, the stamp
    (``mask * pattern``), then up to ``max_images`` clean images above the same images stamped
    (``(1 - mask) * x + mask * pattern``, the Neural Cleanse trigger model).

    Args:
        mask: ``(1, H, W)`` or ``(H, W)`` in [0, 1] (array-like: numpy, a CPU tensor, nested lists).
        pattern: ``(C, H, W)`` in [0, 1].
        images: ``(N, C, H, W)`` clean images in [0, 1].
        title: the figure's title (e.g. the class and the detector).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(mask, dtype=np.float32)
    m = m.reshape(m.shape[-2], m.shape[-1])
    p = np.asarray(pattern, dtype=np.float32)
    x = np.asarray(images, dtype=np.float32)[:max_images]
    stamped = (1.0 - m) * x + m * p
    cols = max(3, len(x))
    fig, axes = plt.subplots(3, cols, figsize=(1.6 * cols, 5.0), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    grey = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    axes[0, 0].imshow(m, **grey)
    axes[0, 0].set_title(f"mask ({m.mean():.1%} of pixels)", fontsize=8)
    axes[0, 1].imshow(_chw_to_image(p), **grey)
    axes[0, 1].set_title("pattern", fontsize=8)
    axes[0, 2].imshow(_chw_to_image(m * p), **grey)
    axes[0, 2].set_title("mask x pattern", fontsize=8)
    for i in range(len(x)):
        axes[1, i].imshow(_chw_to_image(x[i]), **grey)
        axes[1, i].set_title("clean", fontsize=8)
        axes[2, i].imshow(_chw_to_image(stamped[i]), **grey)
        axes[2, i].set_title("stamped", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _png(fig)
