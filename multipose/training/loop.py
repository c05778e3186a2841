"""The loop skeleton both trainings share: resume, run steps (epochs or iterations) until the last one, a
stop reason, or ``stop_after``, with a checkpoint and log after each step where the training says so, and
Ctrl-C / SIGTERM turned into a clean stop between steps (:class:`~multipose.infra.runlock.StopRequest`).

A training supplies its :class:`Steps` (the pose head: :mod:`multipose.training.pose`, one step = one epoch
with its validation; encoder pretraining: :mod:`multipose.training.encoder`, one step = one iteration)::

    first = restored.step if resuming else 0
    logs.truncate(first); board = open_board(board_dir, first, enabled=dist.is_main)
    end = run_loop(steps, first, total, stop_after)     # LoopEnd(last, reason)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from multipose.infra.board import Board
from multipose.infra.runlock import StopRequest

__all__ = ["LoopEnd", "Steps", "open_board", "run_loop"]


class Steps(Protocol):
    """What a training does at each step ``number`` (1-based)."""

    def step(self, number: int, stop: StopRequest) -> None:
        """Train step ``number`` (``stop.check(...)`` where it may be interrupted)."""

    def after(self, number: int) -> None:
        """Log, validate or checkpoint after step ``number``, as far as this step calls for it."""

    def stop_reason(self, number: int) -> str | None:
        """Why training ends after step ``number`` before the last one (early stopping, a time limit), or None."""


@dataclass(frozen=True)
class LoopEnd:
    """The last step done and why the loop ended early (None: it reached its last step or ``stop_after``)."""

    last: int
    reason: str | None


def run_loop(steps: Steps, first: int, total: int, stop_after: int | None = None) -> LoopEnd:
    """Run steps ``first + 1 .. total`` of ``steps``; a resumed run (``first > 0``) that had stopped for a reason
    stays stopped. ``stop_after`` ends the call after that step (as if the process were killed there: for
    testing resumption)."""
    reason = steps.stop_reason(first) if first else None
    number = first
    with StopRequest() as stop:
        while reason is None and number < total:
            number += 1
            steps.step(number, stop)
            steps.after(number)
            reason = steps.stop_reason(number)
            if stop_after is not None and number >= stop_after:
                break
    return LoopEnd(number, reason)


def open_board(folder: str | os.PathLike[str], first: int, enabled: bool) -> Board:
    """The TensorBoard writer of a run resumed after step ``first`` (0: a new run): events of later steps
    written before an interruption are purged, so every step appears once."""
    return Board(folder, enabled=enabled, purge_step=first + 1 if first else None)
