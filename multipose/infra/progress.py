"""Progress bars that suit both a terminal and a log file.

On a terminal :func:`progress_bar` is a plain ``tqdm`` bar. When stderr is not a terminal (``nohup``,
Slurm, Docker logs, a pipe) a bar would write its ``\\r`` updates into the log many times a second;
there it writes a plain line at most every :data:`LOG_INTERVAL_S` seconds instead (tqdm's
``mininterval``; its carriage returns turned into line ends, blank clearing writes dropped, and the
refreshes a bar forces, e.g. with ``set_postfix``, held to the same interval).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

__all__ = ["LOG_INTERVAL_S", "progress_bar"]

#: Seconds between progress lines when stderr is not a terminal.
LOG_INTERVAL_S = 30.0


class _LogLines:
    """A file for tqdm that writes an update as one line on the current stderr, at most one line
    every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = -float("inf")

    def write(self, text: str) -> None:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        now = time.monotonic()
        if line and now - self.last >= self.interval:
            self.last = now
            sys.stderr.write(line + "\n")

    def flush(self) -> None:
        sys.stderr.flush()


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """``tqdm(*args, **kwargs)`` on a terminal; on anything else, a line every :data:`LOG_INTERVAL_S`."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", max(LOG_INTERVAL_S, kwargs["mininterval"]))
        kwargs.setdefault("file", _LogLines(kwargs["mininterval"]))
        kwargs.setdefault("ascii", True)
    return tqdm(*args, **kwargs)
