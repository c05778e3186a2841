"""Content addressing for the on-disk caches (meshes, view caches, codebooks, validation sets): a cache file's
name carries the hash of everything its content depends on, so a change of any input makes a new file instead
of a stale hit."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["content_key", "file_sha256"]


def content_key(described: Mapping[str, Any] | str) -> str:
    """Hex sha256 of ``described``: a JSON-able mapping (canonical JSON, keys sorted) or a string as it is."""
    text = described if isinstance(described, str) else json.dumps(described, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
