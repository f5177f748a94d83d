"""Matplotlib figures rendered to base64 PNG for self-contained HTML reports (formatting only)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["line_plot", "histogram", "trigger_png", "reversed_trigger_png", "warp_png", "adversarial_png", "data_uri"]


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


def _grid(rows: Sequence[Sequence[tuple[Any, str]]], *, title: str) -> str:
    """Pictures in rows, each ``(image, caption)`` with the image ``(C, H, W)`` or ``(H, W)`` in [0, 1] (shown on
    a fixed [0, 1] grey scale, so that faint changes stay faint), as one base64 PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cols = max(3, *(len(r) for r in rows))
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.67 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, row in enumerate(rows):
        for j, (image, caption) in enumerate(row):
            axes[i, j].imshow(_chw_to_image(image), cmap="gray", vmin=0.0, vmax=1.0)
            axes[i, j].set_title(caption, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


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
    import numpy as np

    m = np.asarray(mask, dtype=np.float32)
    m = m.reshape(m.shape[-2], m.shape[-1])
    p = np.asarray(pattern, dtype=np.float32)
    x = np.asarray(images, dtype=np.float32)[:max_images]
    stamped = (1.0 - m) * x + m * p
    rows = [
        [(m, f"mask ({m.mean():.1%} of pixels)"), (p, "pattern"), (m * p, "mask x pattern")],
        [(image, "clean") for image in x],
        [(image, "stamped") for image in stamped],
    ]
    return _grid(rows, title=title)


def warp_png(flow: Any, images: Any, warped: Any, *, title: str, max_images: int = 4) -> str:
    """A reversed warp and what it does, as a base64 PNG: the length of each pixel's displacement (scaled to its
    largest), then up to ``max_images`` clean images above the same images warped.

    Args:
        flow: ``(2, H, W)`` displacements in pixels (array-like).
        images: ``(N, C, H, W)`` clean images in [0, 1].
        warped: the same images warped by ``flow``.
        title: the figure's title.
    """
    import numpy as np

    f = np.asarray(flow, dtype=np.float32)
    length = np.sqrt((f**2).sum(axis=0))
    top = float(length.max())
    shown = length / top if top > 0 else length
    rows = [
        [(shown, f"displacement (largest {top:.2f} px, mean {length.mean():.2f} px)")],
        [(image, "clean") for image in np.asarray(images, dtype=np.float32)[:max_images]],
        [(image, "warped") for image in np.asarray(warped, dtype=np.float32)[:max_images]],
    ]
    return _grid(rows, title=title)


def reversed_trigger_png(trigger: Any, images: Any, *, title: str) -> str:
    """The picture of a reversed trigger (:class:`pruneguard.scan.reversal.ReversedTrigger`) on ``images``: a
    warp's displacement (:func:`warp_png`) or a stamp's mask and pattern (:func:`trigger_png`)."""
    if getattr(trigger, "flow", None) is not None:
        return warp_png(trigger.flow, images, trigger.apply(images), title=title)
    return trigger_png(trigger.mask, trigger.pattern, images, title=title)


def adversarial_png(clean: Any, adversarial: Any, captions: Sequence[tuple[str, str]], *, title: str) -> str:
    """Clean images above their adversarial versions and, below, the perturbations (``adversarial - clean``,
    scaled so that the largest change of each spans the grey scale; mid-grey is no change), as a base64 PNG.

    Args:
        clean: ``(N, C, H, W)`` images in [0, 1] (array-like).
        adversarial: the same images attacked, same shape.
        captions: per image, the captions of its clean and its adversarial picture (e.g. the predictions).
        title: the figure's title (e.g. the attack and its budget).
    """
    import numpy as np

    x = np.asarray(clean, dtype=np.float32)
    x_adv = np.asarray(adversarial, dtype=np.float32)
    delta = x_adv - x
    rows: list[list[tuple[Any, str]]] = [[], [], []]
    for i, (up, down) in enumerate(captions):
        scale = float(np.abs(delta[i]).max()) or 1.0
        rows[0].append((x[i], up))
        rows[1].append((x_adv[i], down))
        rows[2].append((0.5 + delta[i] / (2 * scale), f"change ×{0.5 / scale:.3g}"))
    return _grid(rows, title=title)
