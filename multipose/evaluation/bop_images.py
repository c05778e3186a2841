"""Images and crops of a BOP split: RGB and depth files read, square crops cut around each instance's box (the
AAE's windows), and the intrinsics of those crops."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from multipose.data.views import crop_intrinsics, crop_square, crop_windows
from multipose.evaluation.bop_folders import BopInstance
from multipose.inference.box_pose import box_extent
from multipose.inference.images import crop_boxes, read_rgb
from multipose.infra.errors import DataError
from multipose.infra.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BopCrops:
    """Test instances cut out of their images (CPU tensors, ``N`` instances).

    Attributes:
        images: ``(N, 3, S, S)`` float32 RGB in [0, 1], the encoder's input crops.
        K_crop: ``(N, 3, 3)`` intrinsics of those crops.
        depth: ``(N, V, V)`` float32 test depth (mm) in the VSD window, 0 where unknown (all 0 for an
            instance whose image has no depth PNG); depth_known: ``(N,)`` bool, which instances have one.
        in_image: ``(N, V, V)`` bool, the pixels of the VSD window inside the camera image (BOP evaluates
            the full image: what lies outside it is not seen by either pose).
        K_vsd: ``(N, 3, 3)`` intrinsics of the VSD window (``V x V`` pixels).
        R: ``(N, 3, 3)``, t: ``(N, 3)``: ground-truth poses; K: ``(N, 3, 3)`` camera intrinsics.
        boxes: ``(N, 4)`` ground-truth boxes as silhouette extents ``[u_min, v_min, u_max, v_max]`` in the camera
            image (:func:`box_extent`).
        scene_id, im_id: ``(N,)`` int64; image_width: ``(N,)`` int64 pixels of the camera image.
    """

    images: torch.Tensor
    K_crop: torch.Tensor
    depth: torch.Tensor
    depth_known: torch.Tensor
    in_image: torch.Tensor
    K_vsd: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    K: torch.Tensor
    boxes: torch.Tensor
    scene_id: torch.Tensor
    im_id: torch.Tensor
    image_width: torch.Tensor


def read_depth(path: Path, scale: float) -> np.ndarray:
    """A BOP depth PNG in millimetres (``value * scale``): ``(H, W)`` float32; :class:`DataError` if unreadable."""
    depth = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if depth is None or depth.ndim != 2:
        raise DataError(f"{path}: cannot read this depth image (expected a one-channel 16-bit PNG)")
    return depth.astype(np.float32) * np.float32(scale)


def load_bop_crops(
    instances: Sequence[BopInstance],
    crop_size: int,
    pad_factor: float,
    vsd_size: int,
    vsd_pad: float = 2.0,
    progress: bool = True,
) -> BopCrops:
    """Cut every instance out of its image: the encoder's crop (window side ``pad_factor * max(w, h)``
    of ``bbox_obj``, ``crop_size`` pixels, bilinear) and the test depth in the VSD window (side
    ``vsd_pad * max(w, h)``, ``vsd_size`` pixels, nearest neighbour so no depths are mixed). Each image
    is read once. An image without a depth PNG leaves its instances' test depth unknown (counted, with a
    warning: VSD then uses their rendered ground truth)."""
    if not instances:
        raise ValueError("no instances to load")
    boxes = box_extent(torch.from_numpy(np.stack([i.bbox_obj for i in instances])))
    zeros = torch.zeros(len(instances), 2, dtype=boxes.dtype)
    windows = crop_windows(boxes, zeros, pad_factor)
    vsd_windows = crop_windows(boxes, zeros, vsd_pad)
    K = torch.from_numpy(np.stack([i.K for i in instances]))
    images, depths, inside, widths = [], [], [], []
    known = torch.tensor([i.depth_path is not None for i in instances])
    if not known.all():
        logger.warning("%d of %d BOP test instances are in images without a depth/ PNG: VSD uses their rendered "
                       "ground truth as the test depth", int((~known).sum()), len(instances))
    cache: dict[Path, np.ndarray] = {}
    for n, inst in enumerate(progress_bar(instances, desc="cropping test images", unit="instance", disable=not progress,
                                  leave=False)):
        assert inst.image_path is not None  # read_bop_split keeps only instances whose image exists
        if inst.image_path not in cache:
            cache.clear()  # instances are ordered by image: keep one image (and its depth) in memory
            cache[inst.image_path] = read_rgb(inst.image_path)
            if inst.depth_path is not None:
                cache[inst.depth_path] = read_depth(inst.depth_path, inst.depth_scale)
        images.append(crop_boxes(cache[inst.image_path], boxes[n:n + 1], crop_size, pad_factor)[0])
        depth = np.zeros((vsd_size, vsd_size), np.float32)
        if inst.depth_path is not None:
            depth = crop_square(cache[inst.depth_path], vsd_windows[n].tolist(), vsd_size, cv2.INTER_NEAREST)
        depths.append(torch.from_numpy(depth))
        height, width = cache[inst.image_path].shape[:2]
        frame = np.ones((height, width), np.uint8)
        widths.append(width)
        inside.append(torch.from_numpy(crop_square(frame, vsd_windows[n].tolist(), vsd_size, cv2.INTER_NEAREST) > 0))
    return BopCrops(
        images=torch.stack(images),
        K_crop=crop_intrinsics_batch(K, windows, crop_size),
        depth=torch.stack(depths),
        depth_known=known,
        in_image=torch.stack(inside),
        K_vsd=crop_intrinsics_batch(K, vsd_windows, vsd_size),
        R=torch.from_numpy(np.stack([i.R for i in instances])).float(),
        t=torch.from_numpy(np.stack([i.t for i in instances])).float(),
        K=K.float(),
        boxes=boxes.float(),
        scene_id=torch.tensor([i.scene_id for i in instances], dtype=torch.int64),
        im_id=torch.tensor([i.im_id for i in instances], dtype=torch.int64),
        image_width=torch.tensor(widths, dtype=torch.int64),
    )


def crop_intrinsics_batch(K: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`multipose.data.views.crop_intrinsics` with one camera per window: ``(N, 3, 3), (N, 3)
    -> (N, 3, 3)`` float32 (``A_n K_n``)."""
    A = crop_intrinsics(torch.eye(3, dtype=torch.float64), windows.double(), size)
    return (A @ K.double()).float()
