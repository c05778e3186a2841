"""Progress bars: a bar on a terminal, sparse plain lines in a log."""

from __future__ import annotations

import io
import sys

from multipose.infra import progress
from multipose.infra.progress import progress_bar


class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_a_log_gets_a_few_plain_lines_not_carriage_returns(monkeypatch):
    log = _Log()
    monkeypatch.setattr(sys, "stderr", log)
    with progress_bar(total=5000, desc="work", unit="item") as bar:
        for i in range(5000):
            bar.update(1)
            if i % 10 == 0:
                bar.set_postfix(loss=f"{i:.4f}")  # forces a refresh: still at most one line per interval
    text = log.getvalue()
    assert "\r" not in text and "work" in text
    assert len(text.splitlines()) <= 3  # start (and end) lines; updates only every LOG_INTERVAL_S seconds
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    log.seek(0)
    log.truncate()
    for _ in progress_bar(range(3), desc="fast", mininterval=0.0, maxinterval=0.0):
        pass
    assert "\r" not in log.getvalue() and len(log.getvalue().splitlines()) >= 3
