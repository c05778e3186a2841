"""Poses from a detector's boxes (``[Evaluation] DETECTIONS``, ``PROTOCOL: bop19``), for results comparable
with BOP entries.

A BOP detections file (the BOP 2022+ default detections, COCO style) is a JSON list of ``{"scene_id",
"image_id", "category_id", "bbox": [x, y, w, h], "score", "time"}``; ``bbox`` in COCO's convention (``x, y``
the top-left corner of the first pixel, ``w, h`` in pixels, so the box spans ``[x - 0.5, x + w - 0.5]`` with
pixel centres at integer coordinates), ``time`` the detector's seconds for the image. The detections of
``OBJ_ID`` in the target images are cropped like the ground-truth instances (:func:`~multipose.evaluation.bop_folders.
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

import torch

from multipose.data.views import ViewSettings
from multipose.evaluation.bop19 import Submission, select
from multipose.evaluation.scoring import Estimates
from multipose.inference import box_pose
from multipose.infra.errors import DataError
from multipose.infra.timing import timed
from multipose.models import Codebook, Encoder, PoseHead
from multipose.models.head import codebook_code, head_input

logger = logging.getLogger(__name__)

__all__ = ["Detections", "detection_submissions", "detector_seconds", "read_detections"]


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


def read_detections(path: Path, obj_id: int | None) -> list[dict]:
    """The detections of ``obj_id`` (None: of every object) in a BOP detections file: ``{"key": (scene_id,
    image_id), "bbox": [x, y, w, h], "score", "time"}`` each. Raises :class:`DataError` for a missing or malformed
    file."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: detections file not found ([Evaluation] DETECTIONS)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc})") from None
    try:
        return [{"key": (int(e["scene_id"]), int(e["image_id"])), "bbox": [float(v) for v in e["bbox"]],
                 "score": float(e.get("score", 1.0)), "time": float(e.get("time", 0.0))}
                for e in entries if obj_id is None or int(e["category_id"]) == obj_id]
    except (TypeError, KeyError, ValueError):
        raise DataError(f"{path}: expected a BOP detections list of {{scene_id, image_id, category_id, bbox, score, "
                        "time}} objects") from None


def detector_seconds(path: Path) -> dict[tuple[int, int], float]:
    """The detector's seconds of each image of a BOP detections file (``(scene_id, image_id) -> time``; BOP files
    repeat it on every detection of the image): what every object's results rows of the image include once."""
    seconds: dict[tuple[int, int], float] = {}
    for d in read_detections(path, None):
        seconds[d["key"]] = max(seconds.get(d["key"], 0.0), d["time"])
    return seconds


@torch.no_grad()
def detection_submissions(
    detections: Detections, encoder: Encoder, head: PoseHead, codebook: Codebook | None, device: torch.device,
    view: ViewSettings, vertices: torch.Tensor, batch_size: int, codebook_encoder: Encoder | None = None,
) -> dict[str, Submission]:
    """BOP's rows (:func:`~multipose.evaluation.bop19.select`) of the head's hypotheses (and the codebook's
    match, on the codes of ``codebook_encoder``, default ``encoder``) on every detection, posed from the detected
    box (``view``: the crop settings; ``vertices (V, 3)``: the data mesh's), scored by confidence times detection
    score; in batches of ``batch_size``."""
    settings = view
    vertices = vertices.to(device)
    out: dict[str, list] = {"head": [], "codebook": []}
    seconds = {"encoder": 0.0, "head": 0.0, "codebook": 0.0}
    for part in torch.arange(len(detections)).split(batch_size):
        x, dt = timed(partial(head_input, encoder, head, detections.images[part].to(device)), device)
        seconds["encoder"] += dt
        hyp, dt = timed(partial(head, x), device)
        seconds["head"] += dt
        views = {"head": (hyp.R, hyp.confidence)}
        if codebook is not None:
            code = codebook_code(x, head, codebook_encoder or encoder)
            match, dt = timed(partial(codebook.lookup, code), device)
            seconds["codebook"] += dt
            views["codebook"] = (match.rotations, match.similarity)
        for method, (R_view, confidence) in views.items():
            R, t = box_pose.poses_from_boxes(R_view, detections.boxes[part].to(device), detections.K[part].to(device),
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
