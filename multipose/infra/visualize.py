"""Figures, written headless (Agg) and atomically.

Figures are drawn on :class:`matplotlib.figure.Figure` objects directly (no pyplot state), rendered
to PNG in memory and moved into place with :func:`multipose.infra.atomic.atomic_write_bytes`, so an
interrupted run never leaves a truncated image.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from multipose.infra.atomic import atomic_write_bytes

__all__ = ["image_grid", "save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Render ``fig`` to PNG and write it atomically to ``path``."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    column_titles: Sequence[str],
    row_titles: Sequence[str] | None = None,
    cmaps: Sequence[str | None] | None = None,
    cell_inches: float = 1.6,
) -> Figure:
    """A grid of images: ``rows[r][c]`` is ``(H, W)`` (shown with ``cmaps[c]``, zero = background
    shown black for depth) or ``(H, W, 3)`` RGB in ``[0, 1]``. Each greyscale cell gets its own
    colour scale over its non-zero pixels."""
    n_rows, n_cols = len(rows), len(column_titles)
    fig = Figure(figsize=(cell_inches * n_cols, cell_inches * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if image.ndim == 3:
                ax.imshow(np.clip(image, 0.0, 1.0))
            else:
                valid = image[image != 0]
                vmin, vmax = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 1.0)
                shown = np.ma.masked_where(image == 0, image)
                cmap = (cmaps[c] if cmaps else None) or "viridis"
                ax.set_facecolor("black")
                ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=max(vmax, vmin + 1e-6))
            if r == 0:
                ax.set_title(column_titles[c], fontsize=8)
            if c == 0 and row_titles:
                ax.set_ylabel(row_titles[r], fontsize=7)
    return fig
