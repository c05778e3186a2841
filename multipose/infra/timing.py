"""Wall-clock timing that is honest on CUDA: the device is synchronised before the clock is read.

Used by ``evaluate.py`` (ms per image), ``preview.py`` and the scripts in ``benchmarks/``, and
:class:`PhaseTimes`, the seconds per phase of a ``train.py`` run (``OUTPUT_PATH/timings.json``).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from multipose.infra.atomic import atomic_write_text

__all__ = ["PhaseTimes", "median_seconds", "synchronize", "timed"]

T = TypeVar("T")


def synchronize(device: torch.device | str) -> None:
    """Wait for the queued work of ``device`` (no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], T], device: torch.device | str) -> tuple[T, float]:
    """``fn()`` and its wall time in seconds, with ``device`` synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def median_seconds(fn: Callable[[], Any], device: torch.device | str, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device)[1] for _ in range(max(1, repeats)))


@dataclass
class PhaseTimes:
    """Wall seconds per phase of one process's run, written to ``path`` (JSON) after every phase.

    ``with times.phase("caches"): ...`` adds the block's seconds to that phase (phases repeat: every
    epoch adds to ``head_training``). The file holds ``{"phases": {name: seconds}, "total": seconds
    since this object was made, "notes": {...}}``; ``path`` None keeps the figures in memory only.
    """

    path: Path | None = None
    phases: dict[str, float] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start
            self.save()

    def summary(self) -> dict[str, object]:
        """The figures as written to the file (seconds, rounded to 1 ms)."""
        return {
            "phases": {name: round(seconds, 3) for name, seconds in self.phases.items()},
            "total": round(time.perf_counter() - self.started, 3),
            "notes": self.notes,
        }

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.summary(), indent=1) + "\n")
