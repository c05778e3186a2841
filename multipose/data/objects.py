"""Training batches of several objects (a head of N objects, the original's final version): every object has
its own :class:`~multipose.data.datasets.TrainingData` (view cache, poses, backgrounds, augmentation draws), and
each sample's object is drawn uniformly from a seeded stream of its own; a batch holds the drawn number of
samples of each object, in object order, with ``Batch.objects`` telling which is which."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch

from multipose.data.datasets import TrainingData
from multipose.data.io import Batch

__all__ = ["ObjectMix"]


class ObjectMix:
    """Batches over N objects with the interface of :class:`~multipose.data.datasets.TrainingData`.

    Args:
        parts: one training pipeline per object (list order = object index); their own batch size and epoch
            length are not used.
        generator: draws each sample's object (uniform over the N).
        batch_size, num_samples: per epoch ``num_samples`` samples, the last batch may be smaller.
    """

    def __init__(self, parts: Sequence[TrainingData], generator: torch.Generator, batch_size: int,
                 num_samples: int) -> None:
        if len(parts) < 2:
            raise ValueError("ObjectMix mixes two or more objects")
        self.parts = list(parts)
        self.generator = generator
        self.batch_size, self.num_samples = int(batch_size), int(num_samples)
        self.device = parts[0].device
        self.cache = None  # no pool of one object's views (a population head's targets need one)

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(self.num_samples / self.batch_size)

    def start_epoch(self) -> None:
        """Begin an epoch of every object's pose sampler."""
        for part in self.parts:
            part.start_epoch()

    def __iter__(self) -> Iterator[Batch]:
        self.start_epoch()
        for start in range(0, self.num_samples, self.batch_size):
            yield self.batch(min(self.batch_size, self.num_samples - start))

    def batch(self, n: int | None = None) -> Batch:
        """``n`` samples (default ``batch_size``): the objects drawn, then each object's samples from its pipeline;
        ``index`` is the row in that object's view cache."""
        n = self.batch_size if n is None else int(n)
        drawn = torch.randint(len(self.parts), (n,), generator=self.generator)
        counts = torch.bincount(drawn, minlength=len(self.parts)).tolist()
        batches = [part.batch(k) for part, k in zip(self.parts, counts, strict=True) if k > 0]
        objects = torch.cat([torch.full((k,), i, dtype=torch.int64) for i, k in enumerate(counts) if k > 0])
        return replace(Batch.cat(batches), objects=objects.to(self.device))

    def update(self, batch: Batch, per_sample_loss: torch.Tensor) -> None:
        """Report a batch's per-sample losses ``(B,)`` to each object's pipeline (hard-sample mining)."""
        assert batch.objects is not None  # batches of an ObjectMix say their objects
        for i, part in enumerate(self.parts):
            rows = torch.nonzero(batch.objects == i, as_tuple=True)[0]
            if len(rows):
                part.update(batch.take(rows), per_sample_loss[rows.to(per_sample_loss.device)])

    def state_dict(self) -> dict[str, Any]:
        """Random state of the object stream and of every object's pipeline, for resuming exactly."""
        return {"generator": self.generator.get_state(), "parts": [p.state_dict() for p in self.parts]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        for part, saved in zip(self.parts, state["parts"], strict=True):
            part.load_state_dict(saved)
