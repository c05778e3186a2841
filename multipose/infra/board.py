"""TensorBoard event files of a run (:attr:`multipose.experiment.run_folder.RunFolder.board`), for watching remote runs:
``tensorboard --logdir <OUTPUT_PATH>/tensorboard``.

Rank 0 of a run writes them (:class:`Board` is a no-op elsewhere) beside the CSV files: per epoch the training
loss terms and learning rate, the validation loss and best-of-K depth term, the sample image grids, and the
evaluation's recall per method; encoder pretraining writes its loss. A resumed run discards the events from
the re-run epoch on (``purge_step``), so every curve has one point per step.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["Board"]


class Board:
    """The event files in ``folder`` (created on first use), or nothing when ``enabled`` is false.
    ``purge_step``: events of an earlier process at this step and later are dropped (resuming)."""

    def __init__(self, folder: str | os.PathLike[str], enabled: bool = True, purge_step: int | None = None) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is imported only when used

            self.writer = SummaryWriter(os.fspath(folder), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """``values[tag]`` at ``step`` (tags like ``train/loss``)."""
        if self.writer is None:
            return
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()

    def image_file(self, tag: str, step: int, path: str | os.PathLike[str]) -> None:
        """A PNG written by the run (e.g. a figure) as image ``tag`` at ``step``."""
        if self.writer is None or not Path(path).is_file():
            return
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        self.writer.add_image(tag, rgb, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
