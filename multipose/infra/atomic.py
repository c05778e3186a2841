"""Atomic file writes: a reader never sees a half-written file.

Everything is written to a temporary file in the destination folder, flushed and fsynced, then moved
into place with :func:`os.replace` (atomic on POSIX). A crash leaves either the old file or the new
one (after ``kill -9`` a hidden ``.<name>.*.tmp`` may remain beside it; it is never read).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from multipose.infra.errors import WriteError

__all__ = ["atomic_open", "atomic_torch_save", "atomic_write_bytes", "atomic_write_text"]


def _new_file_mode() -> int:
    """0666 minus the process umask: the permissions ``open(path, "w")`` would give."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, creating parent folders. Returns the path."""
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    import torch  # lazy: text and bytes writers need no torch

    with atomic_open(path) as f:
        torch.save(obj, f)
    return Path(path)


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary file for writing that appears at ``path`` only when the block ends without an
    exception (then flushed, fsynced and moved into place); for large outputs written in pieces,
    e.g. ``np.savez(f, ...)``, without holding a second copy in memory. An ``OSError`` (disk full, ...)
    becomes a :class:`WriteError` naming the file, with nothing at ``path`` changed::

        with atomic_open("cache/views.npz") as f:
            np.savez(f, rgb=rgb)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    try:
        os.chmod(tmp, _new_file_mode())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # disk full, quota, I/O error: the old file stays as it was
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"{path}: cannot write ({exc.strerror or exc}); the previous file, if any, is kept") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
