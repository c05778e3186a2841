"""Findings of the data check (:mod:`multipose.experiment.preflight`): one line per asset a config uses,
and the report they make."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from multipose.infra.errors import UserInputError

#: Every status, in report order of severity; the last two make the check fail.
STATUSES = ("ok", "note", "warning", "missing", "malformed")
FAILING = ("missing", "malformed")

#: How many unreadable files a finding names.
SHOWN_FILES = 3


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``status`` (one of :data:`STATUSES`), the config key (``"[Dataset]
    MODEL_PATH_DATA"``) or asset it is about, and what was found or what to do."""

    status: str
    what: str
    message: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def setting(section: str, name: str) -> str:
    return f"[{section}] {name}"


def guarded(what: str, check: Callable[[], list[Finding]]) -> list[Finding]:
    """Run one check; the loaders' :class:`UserInputError` becomes a ``malformed`` finding."""
    try:
        return check()
    except UserInputError as exc:
        return [Finding("malformed", what, " ".join(str(exc).split()))]


def counted(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} " + (word if n == 1 else plural or word + "s")


def shown_names(paths: Sequence[Path]) -> str:
    shown = ", ".join(p.name for p in paths[:SHOWN_FILES])
    return shown + (f" and {len(paths) - SHOWN_FILES} more" if len(paths) > SHOWN_FILES else "")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def format_report(findings: Sequence[Finding], source: str) -> str:
    """The report: one line per finding and a summary line."""
    width = max((len(f.what) for f in findings), default=0)
    lines = [f"Data check of {source} (relative paths from {Path.cwd()})", ""]
    lines += [f"  {f.status:<9} {f.what:<{width}}  {f.message}" for f in findings]
    counts = {s: sum(f.status == s for f in findings) for s in STATUSES}
    summary = ", ".join(f"{n} {s}" + ("s" if s in ("note", "warning") and n != 1 else "") for s, n in counts.items())
    verdict = ("FAILED: fix what is missing or malformed (see data/README.md)"
               if any(counts[s] for s in FAILING) else "everything the config needs is there")
    lines += ["", f"{summary}: {verdict}"]
    return "\n".join(lines) + "\n"
