"""Checkpoint files: :func:`load_checkpoint`, the one ``torch.load`` of every checkpoint, weights and
codebook file multipose reads, and :class:`CheckpointStore`, a run's epoch checkpoints written with
:mod:`multipose.infra.atomic`.

Checkpoints hold tensors and plain containers only, and :func:`load_checkpoint` reads them with
``torch.load(weights_only=True)``: a file that would need Python objects rebuilt (code named in the
file run) is refused, unless its user trusts it (``--trust-checkpoint``).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any, BinaryIO

import torch

from multipose.infra.atomic import atomic_torch_save, atomic_write_bytes
from multipose.infra.errors import CheckpointRefused

logger = logging.getLogger(__name__)


def load_checkpoint(
    path: str | os.PathLike | BinaryIO, map_location: str | torch.device = "cpu", trust: bool = False,
    name: str | os.PathLike | None = None,
) -> Any:
    """``torch.load`` of a checkpoint (a path, or a binary file object named ``name`` in messages) with
    ``weights_only=True`` (tensors and plain containers only); ``trust``: the unsafe full unpickling, for
    files from a source the user trusts. Raises :class:`CheckpointRefused` for a file that needs it; other
    failures propagate."""
    try:
        return torch.load(path, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as exc:
        # weights_only refuses a global the file names (damaged bytes fail with other messages)
        named = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if trust or named is None:
            raise
        raise CheckpointRefused(
            f"{name if name is not None else path}: refused to load: the file holds Python objects beyond tensors "
            f"and plain containers ({named.group(1)}), which loading would rebuild by running code it names; if you "
            "trust its source, pass --trust-checkpoint"
        ) from None


class CheckpointStore:
    """Epoch checkpoints of one run in a folder: ``<prefix>-epoch{N}.pt`` plus ``<prefix>-best.pt``.

    Each file is a dict written atomically by :func:`atomic_torch_save`. :meth:`save` keeps the
    ``keep`` newest epoch files (and the best one); :meth:`load_latest` returns the newest file that
    reads back, logging and skipping a corrupt one (a crash can leave at most a stray ``*.tmp``, but
    a disk error or a copied, truncated file can still damage a checkpoint).

    Args:
        folder: where the files live (created on the first save).
        prefix: file-name prefix, ``"model"`` gives the original's ``model-epoch{N}.pt``.
        keep: how many of the newest epoch files to keep (>= 1).
    """

    def __init__(self, folder: str | os.PathLike, prefix: str = "model", keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.folder = Path(folder)
        self.prefix = prefix
        self.keep = keep
        self._pattern = re.compile(rf"^{re.escape(prefix)}-epoch(\d+)\.pt$")

    def path(self, epoch: int) -> Path:
        return self.folder / f"{self.prefix}-epoch{epoch}.pt"

    @property
    def best_path(self) -> Path:
        return self.folder / f"{self.prefix}-best.pt"

    def epochs(self) -> list[int]:
        """Epochs with a checkpoint file, ascending."""
        if not self.folder.is_dir():
            return []
        found = (self._pattern.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, state: dict[str, Any], epoch: int, is_best: bool = False) -> Path:
        """Write ``state`` as epoch ``epoch`` (and as the best), then drop old epoch files."""
        path = atomic_torch_save(state, self.path(epoch))
        if is_best:
            atomic_write_bytes(self.best_path, path.read_bytes())
        for old in self.epochs()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)
        return path

    def load_latest(
        self, map_location: str | torch.device = "cpu", trust: bool = False
    ) -> tuple[dict[str, Any], Path] | None:
        """The newest readable checkpoint and its path, or None when there is none. A checkpoint that
        would need an unsafe load raises :class:`CheckpointRefused` (never skipped: the run would
        start again from an older state); ``trust`` loads it anyway (:func:`load_checkpoint`)."""
        for epoch in reversed(self.epochs()):
            path = self.path(epoch)
            try:
                return load_checkpoint(path, map_location, trust), path
            except CheckpointRefused:
                raise
            except Exception as exc:  # noqa: BLE001 - any unreadable file: fall back to the previous one
                logger.warning("checkpoint %s is unreadable (%s); trying the previous one", path, exc)
        return None
