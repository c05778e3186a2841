"""Poses of objects in an image from their 2D boxes: :class:`PoseEstimator`.

One call, :meth:`PoseEstimator.predict` ``(image, K, boxes)``:

1. each box is cut out as the encoder's crop (:func:`~multipose.inference.images.crop_boxes`: a square of
   ``pad_factor`` times the box's larger side about its centre, as the training crops and the evaluation's);
2. frozen encoder -> pose head: K rotation hypotheses with confidences, in the crop's view (a head of several
   objects: the block of each box's object, given by the box or chosen by the head's classifier);
3. the AAE's box-to-pose step (:func:`~multipose.inference.box_pose.poses_from_boxes`): the translation from the
   box's size and position and the rotation corrected for the object's offset from the optical axis.

Rotations are BOP's ``cam_R_m2c`` (model to OpenCV camera: x right, y down, z forward), translations in mm.
The evaluation of BOP splits cuts and poses its crops with the same functions, so both give the same poses for
the same boxes. Nothing here reads a config: :func:`multipose.experiment.estimators.estimator_from_run` (or
``estimator_from_config``) builds one from a training run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from multipose.core.mesh import Mesh
from multipose.data.views import ViewSettings
from multipose.inference import box_pose
from multipose.inference.images import crop_boxes
from multipose.infra.errors import InputFileError
from multipose.infra.timing import timed
from multipose.models import Encoder, PoseHead
from multipose.models.head import head_input

logger = logging.getLogger(__name__)

__all__ = ["PoseEstimator", "Poses", "PosedObject"]


@dataclass(frozen=True)
class PosedObject:
    """One object a head poses: its BOP id (``None``: unknown), its model as the training renders saw it (mm; its
    vertices give the translation from a box, its faces the overlays) and the training renders'
    :class:`~multipose.data.views.ViewSettings` (camera, distance, crop size and padding)."""

    obj_id: int | None
    mesh: Mesh
    view: ViewSettings


@dataclass(frozen=True)
class Poses:
    """The poses of ``B`` boxes in one image, ``K`` hypotheses each (CPU tensors).

    Attributes:
        boxes: ``(B, 4)`` the boxes as ``[u_min, v_min, u_max, v_max]`` (pixel centres at integers).
        obj_id: ``(B,)`` int64 BOP id of each box's object (0: unknown); object: ``(B,)`` its index in the head.
        R: ``(B, K, 3, 3)`` rotations (model to OpenCV camera); t: ``(B, K, 3)`` translations (mm).
        confidence: ``(B, K)`` the head's confidences (a softmax over the K); score: ``(B,)`` the box's score
            (1 when the boxes file gave none) times its top confidence.
        seconds: per box, ``"encoder+head"`` and ``"translation"`` (the box-to-pose step), wall time.
    """

    boxes: torch.Tensor
    obj_id: torch.Tensor
    object: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    confidence: torch.Tensor
    score: torch.Tensor
    seconds: dict[str, float]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def top(self) -> torch.Tensor:
        """``(B,)`` the index of each box's most confident hypothesis."""
        return self.confidence.argmax(dim=1)

    @property
    def R_top(self) -> torch.Tensor:
        """``(B, 3, 3)`` each box's most confident rotation."""
        return self.R[torch.arange(len(self)), self.top]

    @property
    def t_top(self) -> torch.Tensor:
        """``(B, 3)`` the translation of each box's most confident hypothesis."""
        return self.t[torch.arange(len(self)), self.top]


class PoseEstimator:
    """Encoder + pose head + the box-to-pose step, for any image with a pinhole camera.

    Args:
        encoder: the frozen encoder the head was trained on.
        head: the pose head (eval mode is set here); a head of N objects takes N ``objects``.
        objects: the objects of the head, in its order (:class:`PosedObject`).
        device: where the networks run (the crops are cut on the CPU).
    """

    def __init__(self, encoder: Encoder, head: PoseHead, objects: list[PosedObject],
                 device: torch.device | str = "cpu") -> None:
        if len(objects) != head.config.num_objects:
            raise ValueError(f"the head poses {head.config.num_objects} object(s), {len(objects)} given")
        sizes = {(o.view.size, o.view.pad_factor) for o in objects}
        if len(sizes) != 1:
            raise ValueError(f"the objects' crops differ in size or padding: {sizes}")
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.head = head.to(self.device).eval()
        self.objects = objects
        self.crop_size, self.pad_factor = sizes.pop()

    @torch.no_grad()
    def warm_up(self) -> None:
        """Run the networks once on a blank crop (first calls allocate memory and pick kernels), so that the
        timings of :meth:`predict` measure the steady state."""
        blank = torch.zeros(1, 3, self.crop_size, self.crop_size, device=self.device)
        self.head(head_input(self.encoder, self.head, blank))

    @property
    def num_hypotheses(self) -> int:
        return self.head.config.num_hypotheses

    def object_index(self, obj_id: torch.Tensor) -> torch.Tensor:
        """The head's index of each box's object: ``obj_id (B,)`` BOP ids, 0 for a box without one -> ``(B,)``,
        -1 where the head's classifier is to choose. Raises :class:`InputFileError` for an id the head does not
        pose, or a box without id for a head of several objects that has no classifier."""
        ids = [o.obj_id for o in self.objects]
        index = torch.zeros(len(obj_id), dtype=torch.int64)
        for b, i in enumerate(obj_id.tolist()):
            if i and any(known is not None for known in ids):
                if i not in ids:
                    raise InputFileError(f"a box of object {i}, but the head poses object(s) {ids}; give boxes of "
                                         "its objects (or leave obj_id out)")
                index[b] = ids.index(i)
            elif len(ids) > 1:
                if not self.head.config.classify:
                    raise InputFileError(
                        f"a box of object {i or 'unknown'}, and the head of {len(ids)} objects has no classifier to "
                        "choose its block: give each box's obj_id" + (
                            "" if i == 0 else " and the objects' BOP ids as [Evaluation] OBJ_ID (a list)"))
                index[b] = -1
        return index

    def crops(self, image: np.ndarray, boxes: torch.Tensor) -> torch.Tensor:
        """The encoder's crops of ``image (H, W, 3)`` uint8 RGB at ``boxes (B, 4)``: ``(B, 3, S, S)`` in [0, 1]."""
        return crop_boxes(image, boxes, self.crop_size, self.pad_factor)

    @torch.no_grad()
    def hypotheses(self, crops: torch.Tensor, objects: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                              torch.Tensor]:
        """The head's hypotheses of ``crops (B, 3, S, S)``: rotations in the crop's view ``(B, K, 3, 3)``,
        confidences ``(B, K)`` and the objects' indices ``(B,)`` (``objects (B,)``; -1: the classifier's)."""
        out = self.head(head_input(self.encoder, self.head, crops.to(self.device)))
        objects = objects.to(self.device)
        if out.object_logits is not None:
            objects = torch.where(objects < 0, out.object_logits.argmax(dim=1), objects)
        out = out.select(objects)
        return out.R, out.confidence, objects

    def poses(self, R_view: torch.Tensor, boxes: torch.Tensor, K: torch.Tensor,
              objects: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The AAE's poses of rotations ``R_view (B, M, 3, 3)`` seen in the crops of ``boxes (B, 4)`` taken by a
        camera ``K (B, 3, 3)``, of objects ``objects (B,)``: ``R (B, M, 3, 3), t (B, M, 3)``."""
        R = torch.empty_like(R_view)
        t = R_view.new_empty(*R_view.shape[:2], 3)
        for n, obj in enumerate(self.objects):
            rows = torch.nonzero(objects == n).flatten()
            if len(rows):
                R[rows], t[rows] = box_pose.poses_from_boxes(
                    R_view[rows], boxes[rows].to(R_view), K[rows].to(R_view), obj.view.K_tensor(R_view.device),
                    obj.view.distance, obj.mesh.vertices.to(R_view))
        return R, t

    def predict(self, image: np.ndarray, K: torch.Tensor | np.ndarray, boxes: torch.Tensor | np.ndarray,
                obj_id: torch.Tensor | None = None, box_score: torch.Tensor | None = None) -> Poses:
        """The poses of the objects in ``boxes (B, 4)`` ``[u_min, v_min, u_max, v_max]`` (pixel centres at
        integers: :func:`~multipose.inference.box_pose.coco_extent` converts a detector's ``[x, y, w, h]``) of
        ``image (H, W, 3)`` uint8 RGB taken with intrinsics ``K (3, 3)``; ``obj_id (B,)`` BOP ids (0 or None:
        the head's object, or its classifier's choice), ``box_score (B,)`` the detector's scores."""
        boxes = torch.as_tensor(boxes, dtype=torch.float64).cpu().reshape(-1, 4)
        B = len(boxes)
        obj_id = torch.zeros(B, dtype=torch.int64) if obj_id is None else obj_id.cpu().to(torch.int64)
        box_score = None if box_score is None else box_score.cpu()
        objects = self.object_index(obj_id)
        if B == 0:
            k = self.num_hypotheses
            return Poses(boxes=torch.zeros(0, 4), obj_id=obj_id, object=objects, R=torch.zeros(0, k, 3, 3),
                         t=torch.zeros(0, k, 3), confidence=torch.zeros(0, k), score=torch.zeros(0),
                         seconds={"encoder+head": 0.0, "translation": 0.0})
        K_all = torch.as_tensor(K, dtype=torch.float32).cpu().reshape(1, 3, 3).expand(B, 3, 3)
        crops = self.crops(image, boxes)
        (R_view, confidence, objects), net = timed(partial(self.hypotheses, crops, objects), self.device)
        (R, t), pose = timed(partial(self.poses, R_view, boxes.float().to(self.device), K_all.to(self.device),
                                     objects), self.device)
        ids = torch.tensor([self.objects[n].obj_id or 0 for n in objects.tolist()], dtype=torch.int64)
        scores = (box_score if box_score is not None else torch.ones(B)).float()
        return Poses(boxes=boxes.float(), obj_id=torch.where(obj_id > 0, obj_id, ids), object=objects.cpu(),
                     R=R.float().cpu(), t=t.float().cpu(), confidence=confidence.float().cpu(),
                     score=scores * confidence.float().cpu().amax(dim=1),
                     seconds={"encoder+head": net / max(B, 1), "translation": pose / max(B, 1)})
