"""Poses for one's own images (``predict.py``) and overlays of an evaluation's BOP images (``evaluate.py --vis``).

:func:`predict_images`: images (a file or a folder), a camera file and a boxes file
(:mod:`multipose.inference.inputs`) -> ``poses.json`` and, with ``vis``, one ``<image>-poses.png`` per image
(:mod:`multipose.inference.overlay`). Every input is read and checked, and the checkpoint loaded and checked
against the config, before anything is written.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from multipose.config import Config
from multipose.data import bop_files
from multipose.evaluation.report import write_json
from multipose.evaluation.testsets import TestSet
from multipose.experiment.estimators import estimator_from_config
from multipose.inference.estimator import PoseEstimator, Poses
from multipose.inference.inputs import (
    Boxes,
    Camera,
    check_boxes_inside,
    list_images,
    read_boxes,
    read_camera,
    read_image,
)
from multipose.inference.overlay import draw_poses
from multipose.infra.atomic import atomic_write_bytes
from multipose.infra.errors import DataError, InputFileError
from multipose.infra.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = ["Prediction", "bop_overlays", "pose_entries", "predict_images", "write_overlay"]

#: What poses.json says of its numbers.
CONVENTIONS = ("R: rotation model -> camera (BOP's cam_R_m2c), 3x3 row-major, OpenCV camera (x right, y down, "
               "z forward); t: model origin in the camera, mm (from the box, the AAE's way); box: [u_min, v_min, "
               "u_max, v_max] pixel extent (pixel centres at integers); hypotheses in decreasing confidence")


@dataclass(frozen=True)
class Prediction:
    """What :func:`predict_images` did: the poses of each image (by file name), the files written, and the mean
    seconds per box (``"encoder+head"``, ``"translation"``)."""

    poses: dict[str, Poses]
    files: list[Path]
    seconds_per_box: dict[str, float]

    @property
    def num_boxes(self) -> int:
        return sum(len(p) for p in self.poses.values())


def pose_entries(poses: Poses) -> list[dict[str, Any]]:
    """``poses.json``'s entries of one image: per box its box, object, score, top pose and every hypothesis."""
    entries = []
    for b in range(len(poses)):
        order = poses.confidence[b].argsort(descending=True).tolist()
        entries.append({
            "box": [round(float(v), 3) for v in poses.boxes[b]], "obj_id": int(poses.obj_id[b]) or None,
            "score": float(poses.score[b]), "R": poses.R_top[b].tolist(), "t": poses.t_top[b].tolist(),
            "hypotheses": [{"confidence": float(poses.confidence[b, k]), "R": poses.R[b, k].tolist(),
                            "t": poses.t[b, k].tolist()} for k in order],
        })
    return entries


def write_overlay(path: Path, image: np.ndarray, K: torch.Tensor, poses: Poses, estimator: PoseEstimator,
                  truth: tuple[torch.Tensor, torch.Tensor] | None = None) -> Path:
    """``image`` with ``poses`` drawn (:func:`~multipose.inference.overlay.draw_poses`) as a PNG at ``path``."""
    drawn = draw_poses(image, K, poses, [o.mesh for o in estimator.objects], truth)
    ok, data = cv2.imencode(".png", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"{path}: the overlay could not be encoded as PNG")
    return atomic_write_bytes(path, data.tobytes())


def _checked_images(paths: list[Path], camera: Camera, boxes: dict[str, Boxes], where: str,
                    estimator: PoseEstimator) -> dict[Path, Boxes]:
    """Each image's boxes, every image read and every box checked (not wholly outside its image, of an object the
    head poses) before any work."""
    checked = {}
    for path in paths:
        found = boxes.get(path.name)
        image = read_image(path, camera)
        if found is None:
            logger.info("%s: no boxes, no poses", path)
            continue
        check_boxes_inside(found, image, f"{where}: {path.name}")
        estimator.object_index(found.obj_id)  # raises for an object the head does not pose
        checked[path] = found
    return checked


def predict_images(
    cfg: Config, images: str | os.PathLike[str], camera: str | os.PathLike[str], boxes: str | os.PathLike[str],
    out: str | os.PathLike[str], *, checkpoint: str | os.PathLike[str] | None = None, vis: bool = False,
    trust: bool = False, progress: bool = True,
) -> Prediction:
    """The poses of the boxes of ``boxes`` in ``images`` taken with ``camera`` by the head of ``checkpoint`` (default
    the run's ``model-best.pt``): ``out/poses.json`` and, with ``vis``, ``out/<image stem>-poses.png``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: a file, not a folder; give --out a folder (new or existing)")
    cam = read_camera(camera)
    paths = list_images(images)
    estimator = estimator_from_config(cfg, checkpoint, trust=trust)
    known = [o.obj_id for o in estimator.objects]
    per_image = read_boxes(boxes, paths, None if None in known else {int(i) for i in known if i is not None})
    work = _checked_images(paths, cam, per_image, os.fspath(boxes), estimator)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    estimator.warm_up()
    found: dict[str, Poses] = {}
    files: list[Path] = []
    for path, box in progress_bar(work.items(), desc="posing", unit="image", disable=not progress, leave=False):
        image = read_image(path, cam)
        found[path.name] = estimator.predict(image, cam.K, box.boxes, box.obj_id, box.score)
        if vis:
            files.append(write_overlay(out / f"{path.stem}-poses.png", image, cam.K, found[path.name], estimator))
    total = max(sum(len(p) for p in found.values()), 1)
    seconds = {k: sum(p.seconds[k] * len(p) for p in found.values()) / total for k in ("encoder+head", "translation")}
    files.insert(0, write_json(out / "poses.json", {
        "conventions": CONVENTIONS, "K": cam.K.tolist(), "num_hypotheses": estimator.num_hypotheses,
        "checkpoint": os.fspath(checkpoint) if checkpoint else "model-best.pt of the run", "device":
        str(estimator.device), "seconds_per_box": seconds,
        "images": {name: pose_entries(p) for name, p in found.items()},
    }))
    return Prediction(poses=found, files=files, seconds_per_box=seconds)


def bop_overlays(estimator: PoseEstimator, test_set: TestSet, split: Path, out: Path, count: int,
                 obj_id: int | None = None) -> list[Path]:
    """Overlays of the first ``count`` images of a BOP test set: every evaluated instance's hypotheses (posed from
    its box as the evaluation posed it; a head of several objects: the block of ``obj_id``, None: its classifier's
    choice) and its ground truth; ``out/<scene>_<image>.png``."""
    assert test_set.scene_id is not None and test_set.im_id is not None and test_set.boxes is not None
    assert test_set.K is not None  # a BOP test set has its boxes and camera
    keys = list(dict.fromkeys(zip(test_set.scene_id.tolist(), test_set.im_id.tolist(), strict=True)))[:count]
    files = []
    for scene, im in keys:
        rows = torch.nonzero((test_set.scene_id == scene) & (test_set.im_id == im)).flatten()
        path = bop_files.find_image(split / f"{scene:06d}", im, ("rgb", "gray"))
        if path is None:
            continue
        image = read_image(path, Camera(K=test_set.K[rows[0]].double()))
        ids = torch.full((len(rows),), obj_id or 0, dtype=torch.int64)
        poses = estimator.predict(image, test_set.K[rows[0]], test_set.boxes[rows].double(), ids)
        files.append(write_overlay(out / f"{scene:06d}_{im:06d}.png", image, test_set.K[rows[0]], poses, estimator,
                                   (test_set.R[rows], test_set.t[rows])))
    return files
