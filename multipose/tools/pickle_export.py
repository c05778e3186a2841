"""A BOP split as the original's test pickle (``generate_dataset.py --from-bop``): crops cut as the original's
``bop2pickle.py`` cut them, with their rotations and boxes."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from multipose.evaluation.bop_folders import read_bop_split, subsample
from multipose.inference.images import read_rgb
from multipose.infra.errors import DataError


def crop_like_bop2pickle(
    image: np.ndarray, box_xywh: np.ndarray, pad_factor: float = 1.2, size: int = 128
) -> np.ndarray:
    """The original's ``bop2pickle.py`` crop: a square of side ``int(max(w, h) * pad_factor)`` about the
    box centre, clipped at the image border (so a crop at the border is not square and gets
    stretched), resized to ``size`` x ``size`` with bilinear interpolation: ``(H, W, 3) -> (size, size, 3)``."""
    x, y, w, h = np.asarray(box_xywh).astype(np.int32)
    side = int(max(h, w) * pad_factor)
    left, right = int(max(x + w / 2 - side / 2, 0)), int(min(x + w / 2 + side / 2, image.shape[1]))
    top, bottom = int(max(y + h / 2 - side / 2, 0)), int(min(y + h / 2 + side / 2, image.shape[0]))
    return cv2.resize(image[top:bottom, left:right], (size, size), interpolation=cv2.INTER_LINEAR)


def bop_split_pickle(
    folder: str | os.PathLike[str], obj_id: int, size: int = 128, pad_factor: float = 1.2, limit: int | None = None
) -> dict[str, list]:
    """The original's ``bop2pickle.py``: every instance of ``obj_id`` in a BOP split folder with a
    non-empty visible box (no visibility threshold), cropped by :func:`crop_like_bop2pickle` around
    its visible box, in the original's pickle format ``{"images", "Rs", "ts", "visib_fract",
    "scene_ids", "img_ids", "obj_ids"}`` (uint8 RGB crops, OpenCV ``cam_R_m2c``, ``cam_t_m2c`` in mm).
    ``limit``: at most that many instances, evenly spaced (:func:`subsample`)."""
    instances = [
        i for i in read_bop_split(folder, obj_id, min_visib_fract=0.0).instances
        if i.bbox_visib[2] > 0 and i.bbox_visib[3] > 0
    ]
    if not instances:
        raise DataError(f"{folder}: no instance of object {obj_id} with a visible box")
    if limit is not None:
        instances = [instances[i] for i in subsample(len(instances), limit)]
    data: dict[str, list] = {k: [] for k in ("images", "Rs", "ts", "visib_fract", "scene_ids", "img_ids", "obj_ids")}
    images: dict[Path, np.ndarray] = {}
    for inst in instances:
        assert inst.image_path is not None  # read_bop_split keeps only instances whose image exists
        if inst.image_path not in images:
            images = {inst.image_path: read_rgb(inst.image_path)}  # instances come ordered by image
        data["images"].append(crop_like_bop2pickle(images[inst.image_path], inst.bbox_visib, pad_factor, size))
        data["Rs"].append(np.asarray(inst.R, dtype=np.float64))
        data["ts"].append(np.asarray(inst.t, dtype=np.float64))
        data["visib_fract"].append(float(inst.visib_fract))
        data["scene_ids"].append(int(inst.scene_id))
        data["img_ids"].append(int(inst.im_id))
        data["obj_ids"].append(int(inst.obj_id))
    return data
