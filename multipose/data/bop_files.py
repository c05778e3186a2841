"""The files of a BOP dataset folder every reader shares: scene folders and their JSON files (plain or
gzipped), and the images of a scene (BOP's layout: ``<scene>/rgb/<im_id:06d>.png`` or ``.jpg``). The test splits
(:mod:`multipose.evaluation.bop_folders`) and the PBR training images (:mod:`multipose.data.pbr`) read them
through these functions."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multipose.infra.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "find_image", "is_bop_split", "is_scene", "json_file", "read_json"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def json_file(path: Path) -> Path | None:
    """``path``, or its gzipped ``path.gz`` (BOP ships some large JSON files gzipped), or None."""
    gz = path.with_name(path.name + ".gz")
    return path if path.is_file() else gz if gz.is_file() else None


def is_scene(folder: Path) -> bool:
    """True for a BOP scene folder (one with a ``scene_gt.json``, or its ``.gz``)."""
    return folder.is_dir() and json_file(folder / "scene_gt.json") is not None


def is_bop_split(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding at least one scene folder with a ``scene_gt.json`` (or
    ``scene_gt.json.gz``)."""
    path = Path(path)
    return path.is_dir() and any(is_scene(p) for p in path.iterdir())


def read_json(path: Path, why: str = "every BOP scene folder needs it") -> Any:
    """A BOP JSON file, or its ``.gz``; a missing one is a :class:`DataError` saying ``why`` it is needed."""
    found = json_file(path)
    if found is None:
        raise DataError(f"{path}: missing ({why})")
    try:
        if found.suffix == ".gz":
            with gzip.open(found, "rt", encoding="utf-8") as f:
                return json.load(f)
        return json.loads(found.read_text(encoding="utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{found}: not a readable JSON file ({exc})") from None


def find_image(folder: Path, im_id: int, kinds: Sequence[str]) -> Path | None:
    """``<folder>/<kind>/<im_id:06d>.<png|jpg|...>`` for the first ``kind`` that has it, or None."""
    for kind in kinds:
        for suffix in IMAGE_SUFFIXES:
            path = folder / kind / f"{im_id:06d}{suffix}"
            if path.is_file():
                return path
    return None
