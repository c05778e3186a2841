"""Run-folder guards for long jobs: one writer per run folder, and a clean stop on SIGTERM.

- :func:`run_folder_lock`: an advisory ``fcntl.flock`` on ``<OUTPUT_PATH>/.lock`` held while a
  training script runs. A second process on the same folder is refused with the holder's PID. The
  kernel drops the lock when its process ends, however it ends, so a lock file left by a killed
  process never blocks.
- :class:`StopRequest`: SIGTERM (what Slurm and Kubernetes send before killing a job) sets a flag
  that a training loop checks at its batch boundaries (:meth:`StopRequest.check`), which raises
  :class:`Preempted` (exit code 143): every state before is already on disk (checkpoints are written
  atomically after each epoch), and re-running the same command resumes.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from multipose.infra.errors import UserInputError, WriteError

__all__ = ["LOCK_FILE", "Preempted", "RunFolderBusy", "StopRequest", "run_folder_lock"]

#: The lock file inside a run folder.
LOCK_FILE = ".lock"


class RunFolderBusy(UserInputError):
    """Another process is writing to the run folder."""

    exit_code = 2


class Preempted(UserInputError):
    """Training stopped on SIGTERM at a batch boundary; exit code 143 (128 + SIGTERM), as a shell reports."""

    exit_code = 128 + signal.SIGTERM


@contextmanager
def run_folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the run folder's lock for the block (creating the folder); raises :class:`RunFolderBusy`
    naming the holder's PID when another process holds it. A folder this call created is removed again
    when the block fails before anything but the lock was written in it."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WriteError(f"{folder}: cannot create the run folder's lock ({exc.strerror or exc})") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunFolderBusy(
                f"{folder}: another process (PID {holder}) is writing to this run folder; wait for it to end, "
                "or use another [Training] OUTPUT_PATH"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        except BaseException:
            if created and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
                path.unlink(missing_ok=True)
                folder.rmdir()
            raise
    finally:
        os.close(fd)  # releases the lock


class StopRequest:
    """Within ``with StopRequest() as stop:``, SIGTERM only sets ``stop.requested``; the loop calls
    :meth:`check` at each batch boundary. Outside the main thread it does nothing (no handler)."""

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self._previous: Callable[[int, FrameType | None], Any] | int | None = None  # what signal.signal returned

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:  # None: the previous handler was not set from Python; the default is the best guess
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)
            self._installed = False

    def check(self, where: str) -> None:
        """Raise :class:`Preempted` (naming ``where``) when SIGTERM has arrived."""
        if self.requested:
            raise Preempted(f"stopped by SIGTERM {where}; every finished epoch is on disk: run the same command "
                            "to resume")
