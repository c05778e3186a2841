"""Pieces shared by the training loops: seeding, the run folder's config guard, metrics and curves.

A run folder (``[Training] OUTPUT_PATH``) holds ``config.cfg``, the resolved config it was started
with. Re-running the same command resumes; running a *different* config into the same folder is
refused (naming the keys that differ) unless ``--force``, because mixing two experiments' epochs in
one folder silently is how results get lost. Keys that cannot change what the finished epochs
computed (:data:`RESUMABLE_KEYS`: how long to train, where to run, what to save) may differ.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from multipose.checkpoint import CheckpointStore, atomic_write_bytes
from multipose.config import Config, load_config_text, write_resolved_config
from multipose.errors import UserInputError
from multipose.visualize import save_figure

logger = logging.getLogger(__name__)

__all__ = [
    "RESUMABLE_KEYS",
    "MetricsLog",
    "RunFolderError",
    "describe_changes",
    "stored_config_changes",
    "config_differences",
    "plot_curves",
    "pose_checkpoints",
    "prepare_run_folder",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]

#: ``(section, key)`` that may change between a run and its resumption.
RESUMABLE_KEYS = frozenset(
    {
        ("Training", "NUM_ITER"),
        ("Training", "EARLY_STOPPING"),
        ("Training", "STOPPING_WINDOW"),
        ("Training", "STOPPING_TIME_LIMIT"),
        ("Training", "MAX_HOURS"),
        ("Training", "DEVICE"),
        ("Training", "SAVE_IMAGES"),
        ("Dataset", "CACHE_DIR"),
        ("Encoder", "NUM_ITER"),
        ("Encoder", "SAVE_INTERVAL"),
        ("Encoder", "LOG_INTERVAL"),
        ("Evaluation", "*"),
        ("Sampling", "*"),
    }
)


class RunFolderError(UserInputError):
    """The run folder belongs to another experiment (or cannot be used)."""

    exit_code = 2


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global generators' states, for a checkpoint, as tensors and plain containers only (so that
    ``torch.load(weights_only=True)`` reads it back: no Python object is pickled)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
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


def config_differences(old: Config, new: Config, allowed: Iterable[tuple[str, str]] = RESUMABLE_KEYS) -> list[str]:
    """``"[Section] KEY: old -> new"`` for every key whose value differs, except ``allowed`` ones
    (``("Section", "*")`` allows a whole section)."""
    allowed = set(allowed)
    changes = []
    for section in new:
        for key, value in new[section].items():
            if (section, key) in allowed or (section, "*") in allowed:
                continue
            before = old[section][key]
            if before != value:
                changes.append(f"[{section}] {key}: {before!r} -> {value!r}")
    return changes


def pose_checkpoints(cfg: Config) -> CheckpointStore:
    """The pose-head checkpoints of a run: ``<OUTPUT_PATH>/models/model-epoch{N}.pt`` (the newest
    ``KEEP_CHECKPOINTS``) and ``model-best.pt``."""
    return CheckpointStore(
        Path(cfg.Training.OUTPUT_PATH) / "models", prefix="model", keep=cfg.Training.KEEP_CHECKPOINTS
    )


def stored_config_changes(cfg: Config) -> list[str] | None:
    """How ``<OUTPUT_PATH>/config.cfg`` differs from ``cfg`` outside :data:`RESUMABLE_KEYS`: a list of
    ``"[Section] KEY: old -> new"`` (empty when the same), or None when the folder holds no config.
    Raises :class:`RunFolderError` when that file cannot be read."""
    folder = Path(cfg.Training.OUTPUT_PATH)
    stored = folder / "config.cfg"
    if not stored.is_file():
        return None
    try:
        old = load_config_text(stored.read_text(), source=stored, check_device=False)  # DEVICE may change
    except (UserInputError, OSError, UnicodeDecodeError) as exc:
        raise RunFolderError(
            f"{folder}: its config.cfg cannot be read ({exc}); use another [Training] OUTPUT_PATH or --force"
        ) from exc
    return config_differences(old, cfg)


def describe_changes(changes: list[str], most: int = 5) -> str:
    """The first ``most`` config changes, joined for a one-line message."""
    shown = "; ".join(changes[:most])
    return shown + (f"; and {len(changes) - most} more" if len(changes) > most else "")


def prepare_run_folder(cfg: Config, force: bool = False) -> Path:
    """Create ``OUTPUT_PATH`` (if needed) and make sure it belongs to this config.

    A folder whose ``config.cfg`` differs in keys outside :data:`RESUMABLE_KEYS` (or cannot be read)
    raises :class:`RunFolderError` unless ``force``. The resolved config is (re)written afterwards.
    """
    folder = Path(cfg.Training.OUTPUT_PATH)
    try:
        changes = stored_config_changes(cfg) or []
    except RunFolderError:
        if not force:
            raise
        changes = []
    if changes and not force:
        raise RunFolderError(
            f"{folder} holds a run with another config ({describe_changes(changes)}); use another "
            "[Training] OUTPUT_PATH, or --force to continue this run with the new values"
        )
    if changes:
        logger.warning("--force: continuing %s with changed config: %s", folder, "; ".join(changes))
    write_resolved_config(cfg, folder)
    return folder


class MetricsLog:
    """A CSV file of one row per step/epoch, rewritten atomically on every append.

    On resume, rows after the checkpoint's step are dropped (:meth:`truncate`), so an interrupted
    epoch that is re-run appears once.
    """

    def __init__(self, path: str | os.PathLike, fields: Sequence[str], step_field: str = "epoch") -> None:
        self.path = Path(path)
        self.fields = list(fields)
        self.step_field = step_field
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
