"""Pieces shared by the training loops: seeding and RNG states, metrics logs and curves. (The run
folder's layout and config guard: :mod:`multipose.experiment.run_folder`.)"""

from __future__ import annotations

import csv
import io
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
from matplotlib.figure import Figure

from multipose.infra.atomic import atomic_write_bytes
from multipose.infra.visualize import save_figure

logger = logging.getLogger(__name__)

__all__ = [
    "MetricsLog",
    "plot_curves",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]

def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global generators' states, for a checkpoint, as tensors and plain containers only (so that
    ``torch.load(weights_only=True)`` reads it back: no Python object is pickled)."""
    version, words, gauss = random.getstate()
    # The global RandomState is an MT19937: its legacy state is this tuple (typed as tuple | dict).
    kind, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state = {
        "python": {"version": version, "state": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`."""
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MetricsLog:
    """A CSV file of one row per step/epoch, rewritten atomically on every append.

    On resume, rows after the checkpoint's step are dropped (:meth:`truncate`), so an interrupted
    epoch that is re-run appears once.
    """

    def __init__(
        self, path: str | os.PathLike, fields: Sequence[str], step_field: str = "epoch", write: bool = True
    ) -> None:
        self.path = Path(path)
        self.fields = list(fields)
        self.step_field = step_field
        self.write = write  # False: rows kept in memory only (the other ranks of a distributed run)
        self.rows: list[dict] = []
        if self.path.is_file():
            with self.path.open(newline="") as f:
                self.rows = list(csv.DictReader(f))

    def truncate(self, last_step: int) -> None:
        """Keep only rows with ``step_field <= last_step``."""
        self.rows = [r for r in self.rows if int(float(r[self.step_field])) <= last_step]
        self._write()

    def append(self, row: dict) -> None:
        self.rows.append({k: row.get(k, "") for k in self.fields})
        self._write()

    def column(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of a column, as floats (empty cells skipped)."""
        pairs = [(float(r[self.step_field]), float(r[name])) for r in self.rows if r.get(name, "") != ""]
        if not pairs:
            return np.zeros(0), np.zeros(0)
        steps, values = zip(*pairs, strict=True)
        return np.asarray(steps), np.asarray(values)

    def _write(self) -> None:
        if not self.write:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.path, buf.getvalue().encode())


def plot_curves(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    xlabel: str,
    ylabel: str,
    log_y: bool = False,
) -> Path:
    """A line plot of ``(label, x, y)`` curves, saved atomically as PNG."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for label, x, y in curves:
        if len(x):
            ax.plot(x, y, marker="o" if len(x) < 30 else None, markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
