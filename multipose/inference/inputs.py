"""The files ``predict.py`` reads besides the config: images, a camera file and a boxes file, each checked before
any work, every problem an :class:`~multipose.infra.errors.InputFileError` naming the file and what to fix.

**Camera** (JSON): ``{"K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]}`` (or the 9 numbers row-major, or BOP's
``cam_K``), in pixels, OpenCV convention (x right, y down); optionally ``"width"`` and ``"height"`` (pixels), then
every image must have that size.

**Boxes** (JSON), in one of these layouts:

- a list of boxes for the one image (``--image FILE``): ``[{"bbox": [x, y, w, h], "obj_id": 10, "score": 0.9},
  ...]`` (``obj_id`` and ``score`` optional);
- an object keyed by image file name (``--image FOLDER``): ``{"000001.png": [{"bbox": ...}, ...], ...}``;
- a BOP detections file (the BOP 2022+ default detections): ``[{"scene_id", "image_id", "category_id", "bbox",
  "score", "time"}, ...]``, matched to the images whose file name is the image id (``000012.png`` is 12),
  ``category_id`` the object id; only the detections of the head's objects are used, and of a file of several
  scenes those of the images' scene (the number of the folder above ``rgb/``, BOP's layout).

The box conventions: ``"bbox"`` is COCO's (a detector's; BOP's detections files): ``x, y`` the top-left corner
of the first pixel, ``w, h`` the size in pixels. ``"bbox_obj"`` is BOP's ground-truth convention
(``scene_gt_info.json``): ``x, y`` the first pixel's centre and ``x + w, y + h`` the last pixel's. Both become
extents ``[u_min, v_min, u_max, v_max]`` with pixel centres at integers (:mod:`multipose.inference.box_pose`).
A box partly outside the image is kept as it is: its crop is black outside the image, as the evaluation's crops
of BOP images are, and the translation uses the whole box. A box wholly outside the image, of zero or negative
size, or with non-finite numbers is refused.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multipose.inference import box_pose
from multipose.inference.images import read_rgb
from multipose.infra.errors import DataError, InputFileError

__all__ = ["IMAGE_SUFFIXES", "Boxes", "Camera", "list_images", "read_boxes", "read_camera", "read_image"]

#: The image files a folder given as ``--image`` contributes (by suffix, case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Camera:
    """``K (3, 3)`` float64 intrinsics in pixels; ``size`` ``(width, height)`` when the file gives it."""

    K: torch.Tensor
    size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Boxes:
    """The ``B`` boxes of one image: ``boxes (B, 4)`` float64 extents ``[u_min, v_min, u_max, v_max]`` (pixel
    centres at integers), ``obj_id (B,)`` int64 (0: not given), ``score (B,)`` float32 (1: not given)."""

    boxes: torch.Tensor
    obj_id: torch.Tensor
    score: torch.Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable JSON {what} file ({exc})") from None


def read_camera(path: str | os.PathLike[str]) -> Camera:
    """The camera file (module docstring). Raises :class:`InputFileError` unless ``K`` is a pinhole matrix with
    fx, fy > 0, finite numbers and the last row ``[0, 0, 1]``."""
    path = Path(path)
    data = _read_json(path, "camera")
    raw = data.get("K", data.get("cam_K")) if isinstance(data, dict) else None
    example = 'e.g. {"K": [[1075.6, 0, 360], [0, 1073.9, 270], [0, 0, 1]], "width": 720, "height": 540}'
    try:
        K = np.asarray(raw, dtype=np.float64).reshape(3, 3)
    except (TypeError, ValueError):
        raise InputFileError(f"{path}: expected \"K\", the 3x3 intrinsics in pixels ({example})") from None
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
        raise InputFileError(f"{path}: K = {K.tolist()} is not a pinhole camera matrix (fx, fy > 0, last row "
                             f"[0, 0, 1]; {example})")
    size = None
    if "width" in data or "height" in data:
        w, h = data.get("width"), data.get("height")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h)):
            raise InputFileError(f"{path}: width and height must be positive integers (pixels), got {w} x {h}")
        size = (w, h)
    return Camera(K=torch.from_numpy(K), size=size)


def list_images(path: str | os.PathLike[str]) -> list[Path]:
    """``path`` itself, or the image files in the folder ``path`` (:data:`IMAGE_SUFFIXES`), sorted."""
    path = Path(path)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise InputFileError(f"{path}: a folder without images ({', '.join(IMAGE_SUFFIXES)})")
        return images
    if not path.is_file():
        raise InputFileError(f"{path}: no such image file or folder")
    return [path]


def read_image(path: Path, camera: Camera) -> np.ndarray:
    """An image as ``(H, W, 3)`` uint8 RGB, checked against the camera file's size when it gives one."""
    try:
        image = read_rgb(path)
    except DataError:
        raise InputFileError(f"{path}: not an image that can be read (PNG, JPEG, BMP, TIFF)") from None
    if camera.size is not None and (image.shape[1], image.shape[0]) != camera.size:
        raise InputFileError(f"{path}: {image.shape[1]} x {image.shape[0]} pixels, but the camera file is for "
                             f"{camera.size[0]} x {camera.size[1]}; give the camera of this image")
    return image


def _box(entry: Any, where: str) -> tuple[list[float], int, float]:
    """One box entry: its extent, object id (0: none) and score (1: none)."""
    if not isinstance(entry, dict) or ("bbox" not in entry and "bbox_obj" not in entry):
        raise InputFileError(f"{where}: expected {{\"bbox\": [x, y, w, h], \"obj_id\": ..., \"score\": ...}}, "
                             f"got {str(entry)[:80]}")
    key = "bbox" if "bbox" in entry else "bbox_obj"
    try:
        xywh = [float(v) for v in entry[key]]
        obj_id = int(entry.get("obj_id", entry.get("category_id")) or 0)
        score = float(entry.get("score", 1.0))
    except (TypeError, ValueError):
        raise InputFileError(f"{where}: {key}, obj_id and score must be numbers, got {str(entry)[:80]}") from None
    if len(xywh) != 4 or not all(math.isfinite(v) for v in (*xywh, score)):
        raise InputFileError(f"{where}: {key} must be 4 finite numbers [x, y, w, h], got {entry[key]}")
    if xywh[2] <= 0 or xywh[3] <= 0:
        raise InputFileError(f"{where}: {key} {entry[key]} has zero or negative size; remove it or fix w and h")
    extent = box_pose.coco_extent if key == "bbox" else box_pose.box_extent
    return extent(torch.tensor(xywh, dtype=torch.float64)).tolist(), obj_id, score


def _detections_per_image(data: list[Any], path: Path, images: list[Path],
                          keep: Collection[int] | None) -> dict[str, list[Any]]:
    """A BOP detections file's entries by image file name: those of the images' scene (the number of the folder
    above ``rgb/``, BOP's layout; needed when the file holds several scenes) and of the objects ``keep`` (None:
    all), matched to the images whose file name is the image id."""
    if not all(isinstance(e, dict) and isinstance(e.get("image_id"), int) and isinstance(e.get("scene_id", 0), int)
               for e in data):
        raise InputFileError(f"{path}: expected a BOP detections list of {{scene_id, image_id, category_id, bbox, "
                             "score, time}} objects with integer ids")
    scenes = {e.get("scene_id") for e in data}
    if len(scenes) > 1:
        folder = images[0].parent.parent.name
        if not folder.isdigit():
            raise InputFileError(f"{path}: detections of {len(scenes)} scenes, and {images[0].parent} is not in a BOP "
                                 "scene folder (NNNNNN/rgb/) that says which: give the detections of one scene")
        data = [e for e in data if e.get("scene_id") == int(folder)]
    if keep is not None:
        data = [e for e in data if int(e.get("category_id", 0)) in keep]
    by_id = {int(p.stem): p.name for p in images if p.stem.isdigit()}
    out: dict[str, list[Any]] = {}
    for e in data:
        if e["image_id"] not in by_id:
            raise InputFileError(f"{path}: a detection of image {e['image_id']}, which is not among the images "
                                 "(their file names are the image ids, e.g. 000012.png)")
        out.setdefault(by_id[e["image_id"]], []).append(e)
    return out


def _per_image(data: Any, path: Path, images: list[Path], keep: Collection[int] | None) -> dict[str, list[Any]]:
    """The boxes file's entries by image file name."""
    if isinstance(data, dict):
        missing = sorted(set(data) - {p.name for p in images})
        if missing:
            raise InputFileError(f"{path}: boxes for {missing[0]}, which is not among the images "
                                 f"({', '.join(p.name for p in images[:5])}{', ...' if len(images) > 5 else ''})")
        return {name: entries if isinstance(entries, list) else [entries] for name, entries in data.items()}
    if not isinstance(data, list):
        raise InputFileError(f"{path}: expected a list of boxes, an object keyed by image name, or a BOP "
                             "detections list")
    if data and isinstance(data[0], dict) and "image_id" in data[0]:  # a BOP detections file
        return _detections_per_image(data, path, images, keep)
    if len(images) > 1:
        raise InputFileError(f"{path}: one list of boxes for {len(images)} images; key the boxes by image file "
                             "name, e.g. {\"000001.png\": [{\"bbox\": [x, y, w, h]}]}")
    return {images[0].name: data}


def read_boxes(path: str | os.PathLike[str], images: list[Path], keep: Collection[int] | None = None
               ) -> dict[str, Boxes]:
    """The boxes of each image (module docstring), by image file name (images without boxes: none); of a BOP
    detections file only the detections of objects ``keep`` (None: all) and of the images' scene."""
    path = Path(path)
    found = {}
    for name, entries in _per_image(_read_json(path, "boxes"), path, images, keep).items():
        parsed = [_box(e, f"{path}: {name}, box {i}") for i, e in enumerate(entries)]
        found[name] = Boxes(boxes=torch.tensor([p[0] for p in parsed], dtype=torch.float64).reshape(-1, 4),
                            obj_id=torch.tensor([p[1] for p in parsed], dtype=torch.int64),
                            score=torch.tensor([p[2] for p in parsed], dtype=torch.float32))
    return found


def check_boxes_inside(boxes: Boxes, image: np.ndarray, where: str) -> None:
    """Refuse a box wholly outside ``image (H, W, 3)`` (a box partly outside is kept, module docstring)."""
    height, width = image.shape[:2]
    for i, (u0, v0, u1, v1) in enumerate(boxes.boxes.tolist()):
        if u1 < -0.5 or v1 < -0.5 or u0 > width - 0.5 or v0 > height - 0.5:
            raise InputFileError(f"{where}: box {i} [{u0:.1f}, {v0:.1f}, {u1:.1f}, {v1:.1f}] (pixel extent) lies "
                                 f"outside the {width} x {height} image; remove it or fix its coordinates")
