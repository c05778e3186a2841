"""Poses from a detector's boxes (``[Evaluation] DETECTIONS``, ``PROTOCOL: bop19``), for results comparable
with BOP entries.

A BOP detections file (the BOP 2022+ default detections, COCO style) is a JSON list of ``{"scene_id",
"image_id", "category_id", "bbox": [x, y, w, h], "score", "time"}``; ``bbox`` in COCO's convention (``x, y``
the top-left corner of the first pixel, ``w, h`` in pixels, so the box spans ``[x - 0.5, x + w - 0.5]`` with
pixel centres at integer coordinates), ``time`` the detector's seconds for the image. The detections of
``OBJ_ID`` in the target images are cropped like the ground-truth instances (:func:`~multipose.evaluation.bop.
load_bop_crops`' window), the head (and the codebook) estimate rotations, the translation comes from the
detected box the AAE way, and an estimate's score is its confidence (similarity) times the detection's score.
:func:`multipose.evaluation.bop19.select` then keeps BOP's rows; a row's time is the detector's time for the
image plus the method's seconds per crop times the crops of the image.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from multipose.config import Config, crop_size
from multipose.data.views import crop_windows, view_settings
from multipose.errors import DataError
from multipose.evaluation import bop
from multipose.evaluation.bop19 import Submission, select
from multipose.evaluation.scoring import Estimates
from multipose.evaluation.testsets import TestSet
from multipose.mesh import load_data_mesh
from multipose.models import Codebook, Encoder, PoseHead
from multipose.timing import timed

logger = logging.getLogger(__name__)

__all__ = ["Detections", "detection_submissions", "load_detections", "read_detections"]


@dataclass(frozen=True)
class Detections:
    """``D`` detections of the object, cropped (CPU tensors).

    Attributes:
        images: ``(D, 3, S, S)`` float RGB in [0, 1], the encoder's crops.
        boxes: ``(D, 4)`` ``[u_min, v_min, u_max, v_max]`` (pixel centres at integers); K: ``(D, 3, 3)``.
        scene_id, im_id: ``(D,)`` int64; score: ``(D,)`` the detector's scores; inst_count: ``(D,)`` the
        targets of the object in the detection's image; image_seconds: the detector's seconds per image.
    """

    images: torch.Tensor
    boxes: torch.Tensor
    K: torch.Tensor
    scene_id: torch.Tensor
    im_id: torch.Tensor
    score: torch.Tensor
    inst_count: torch.Tensor
    image_seconds: dict[tuple[int, int], float]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def read_detections(path: Path, obj_id: int) -> list[dict]:
    """The detections of ``obj_id`` in a BOP detections file: ``{"key": (scene_id, image_id), "bbox": [x, y, w,
    h], "score", "time"}`` each. Raises :class:`DataError` for a missing or malformed file."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: detections file not found ([Evaluation] DETECTIONS)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc})") from None
    try:
        return [{"key": (int(e["scene_id"]), int(e["image_id"])), "bbox": [float(v) for v in e["bbox"]],
                 "score": float(e.get("score", 1.0)), "time": float(e.get("time", 0.0))}
                for e in entries if int(e["category_id"]) == obj_id]
    except (TypeError, KeyError, ValueError):
        raise DataError(f"{path}: expected a BOP detections list of {{scene_id, image_id, category_id, bbox, score, "
                        "time}} objects") from None


def load_detections(cfg: Config, targets: TestSet, progress: bool = False) -> Detections:
    """The detections of ``OBJ_ID`` in ``[Evaluation] DETECTIONS`` that lie in the images of ``targets`` (the
    BOP19 test set: other images are not evaluated), cropped. Raises :class:`DataError` for a bad file."""
    ev = cfg.Evaluation
    path = Path(ev.DETECTIONS)
    assert targets.scene_id is not None and targets.im_id is not None and targets.K is not None
    keys = list(zip(targets.scene_id.tolist(), targets.im_id.tolist(), strict=True))
    first = {key: i for i, key in reversed(list(enumerate(keys)))}
    found = sorted((d for d in read_detections(path, ev.OBJ_ID)
                    if d["key"] in first and d["bbox"][2] > 0 and d["bbox"][3] > 0),
                   key=lambda d: d["key"])  # by image: each image is read once
    if not found:
        raise DataError(f"{path}: no detection of object {ev.OBJ_ID} in the {len(first)} target images")
    logger.info("detections: %d of object %d in %d target images from %s", len(found), ev.OBJ_ID,
                len({d["key"] for d in found}), path)
    xywh = torch.tensor([d["bbox"] for d in found], dtype=torch.float64)
    boxes = bop.xywh_to_xyxy(xywh) - 0.5  # COCO's corner convention to pixel centres
    size = crop_size(cfg)
    windows = crop_windows(boxes, torch.zeros(len(found), 2, dtype=boxes.dtype), cfg.Dataset.PAD_FACTOR)
    split = Path(ev.TEST_DATA_PATH)
    crops: list[torch.Tensor] = []
    image, loaded = np.zeros((1, 1, 3), np.uint8), None
    for n, d in enumerate(found):
        if d["key"] != loaded:
            scene, im = d["key"]
            path_rgb = bop.find_image(split / f"{scene:06d}", im, ("rgb", "gray"))
            if path_rgb is None:
                raise DataError(f"{split / f'{scene:06d}'}: no image {im:06d} for a detection")
            image, loaded = bop.read_rgb(path_rgb), d["key"]
        crop = bop.crop_square(image, windows[n].tolist(), size, cv2.INTER_LINEAR)
        crops.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255.0)
    index = torch.tensor([first[d["key"]] for d in found])
    inst_count = torch.ones(len(found), dtype=torch.int64)
    if targets.inst_count is not None:
        inst_count = targets.inst_count[index]
    seconds: dict[tuple[int, int], float] = {}
    for d in found:
        seconds[d["key"]] = max(seconds.get(d["key"], 0.0), d["time"])  # BOP files repeat the image's time
    return Detections(images=torch.stack(crops), boxes=boxes.float(), K=targets.K[index],
                      scene_id=targets.scene_id[index], im_id=targets.im_id[index],
                      score=torch.tensor([d["score"] for d in found]), inst_count=inst_count, image_seconds=seconds)


@torch.no_grad()
def detection_submissions(
    cfg: Config, detections: Detections, encoder: Encoder, head: PoseHead, codebook: Codebook | None,
    device: torch.device,
) -> dict[str, Submission]:
    """BOP's rows (:func:`~multipose.evaluation.bop19.select`) of the head's hypotheses (and the codebook's
    match) on every detection, posed from the detected box, scored by confidence times detection score."""
    settings = view_settings(cfg)
    vertices = load_data_mesh(cfg).vertices.to(device)
    out: dict[str, list] = {"head": [], "codebook": []}
    seconds = {"encoder": 0.0, "head": 0.0, "codebook": 0.0}
    for part in torch.arange(len(detections)).split(cfg.Evaluation.BATCH_SIZE):
        code, dt = timed(partial(encoder.encode, detections.images[part].to(device)), device)
        seconds["encoder"] += dt
        hyp, dt = timed(partial(head, code), device)
        seconds["head"] += dt
        views = {"head": (hyp.R, hyp.confidence)}
        if codebook is not None:
            match, dt = timed(partial(codebook.lookup, code), device)
            seconds["codebook"] += dt
            views["codebook"] = (match.rotations, match.similarity)
        for method, (R_view, confidence) in views.items():
            R, t = bop.poses_from_boxes(R_view, detections.boxes[part].to(device), detections.K[part].to(device),
                                        settings.K_tensor(device), settings.distance, vertices)
            score = confidence * detections.score[part].to(device)[:, None]
            out[method].append(Estimates(score.cpu(), R.cpu(), t.cpu()))
    submissions = {}
    for method, parts in out.items():
        if parts:
            estimates = Estimates(*(torch.cat([getattr(p, f) for p in parts]) for f in ("score", "R", "t")))
            per_crop = (seconds["encoder"] + seconds[method]) / len(detections)
            submissions[method] = select(detections.scene_id, detections.im_id, detections.inst_count, estimates,
                                         per_crop, detections.image_seconds)
    return submissions
