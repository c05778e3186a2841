"""Poses drawn on their image: each hypothesis as the outline of the model's silhouette rendered at that pose
with the image's camera (OpenCV/BOP convention), at the image's resolution.

Per box: the most confident hypothesis thick (green), the other hypotheses thin (yellow) each labelled with its
confidence, the box (blue), and where it is known the ground truth (red). The silhouettes are rendered by our
renderer in a window of twice the box about its centre, one pixel per image pixel, so a render costs about the
box's area times the model's faces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from multipose.core.mesh import Mesh
from multipose.core.render import MeshRenderer
from multipose.data.views import crop_intrinsics, crop_windows
from multipose.inference.estimator import Poses

__all__ = ["COLOURS", "draw_poses"]

#: RGB colours of the overlay.
COLOURS = {"top": (40, 220, 40), "other": (245, 200, 40), "box": (60, 140, 255), "truth": (235, 40, 40)}
#: The render window's side over the box's larger side.
WINDOW = 2.0
#: The largest render window in pixels (larger boxes are rendered coarser).
MAX_WINDOW = 1024


def _outlines(renderer: MeshRenderer, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor, box: torch.Tensor,
              objects: torch.Tensor) -> list[list[np.ndarray]]:
    """The silhouettes' outlines of poses ``R (M, 3, 3), t (M, 3)`` of ``objects (M,)`` seen by ``K (3, 3)``, in
    image pixel coordinates: per pose a list of ``(P, 1, 2)`` int32 polygons."""
    window = crop_windows(box[None].double(), torch.zeros(1, 2, dtype=torch.float64), WINDOW)[0]
    size = int(min(max(math.ceil(float(window[2])), 16), MAX_WINDOW))
    K_win = crop_intrinsics(K.double(), window[None], size)[0].float()
    dev = renderer.device
    masks = renderer(R.float().to(dev), t.float().to(dev), K_win.to(dev), size, objects=objects.to(dev)).mask
    scale = float(window[2]) / size
    corner = window[:2].numpy() - float(window[2]) / 2
    out = []
    for mask in masks.cpu().numpy() > 0:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        # window pixel j is image coordinate (j + 1/2) * scale + corner (crop_intrinsics' map, inverted)
        out.append([np.round((c.astype(np.float64) + 0.5) * scale + corner).astype(np.int32)
                    for c in contours])
    return out


@torch.no_grad()
def draw_poses(
    image: np.ndarray, K: torch.Tensor, poses: Poses, meshes: Sequence[Mesh],
    truth: tuple[torch.Tensor, torch.Tensor] | None = None, renderer: MeshRenderer | None = None,
) -> np.ndarray:
    """``image (H, W, 3)`` uint8 RGB with ``poses`` drawn (module docstring): ``K (3, 3)`` the image's camera,
    ``meshes`` the head's objects in its order, ``truth`` the ground-truth ``R (B, 3, 3), t (B, 3)`` of the
    boxes when known; ``renderer``: a :class:`MeshRenderer` of ``meshes`` to reuse. Returns a new image."""
    out = np.ascontiguousarray(image.copy())
    renderer = renderer if renderer is not None else MeshRenderer(list(meshes))
    K = torch.as_tensor(K, dtype=torch.float64).reshape(3, 3)
    for b in range(len(poses)):
        k = poses.confidence.shape[1]
        order = poses.confidence[b].argsort(descending=True)  # the top one drawn last, over the others
        R, t = poses.R[b, order], poses.t[b, order]
        objects = poses.object[b].expand(k)
        if truth is not None:
            R, t = torch.cat([R, truth[0][b:b + 1]]), torch.cat([t, truth[1][b:b + 1]])
            objects = poses.object[b].expand(k + 1)
        outlines = _outlines(renderer, R, t, K, poses.boxes[b], objects)
        u0, v0, u1, v1 = (math.floor(float(v) + 0.5) for v in poses.boxes[b])  # the pixel of each side
        cv2.rectangle(out, (u0, v0), (u1, v1), COLOURS["box"], 1, cv2.LINE_AA)
        truth_outline = outlines.pop() if truth is not None else []
        for rank in reversed(range(k)):
            top = rank == 0
            cv2.polylines(out, outlines[rank], True, COLOURS["top" if top else "other"], 2 if top else 1, cv2.LINE_AA)
            if outlines[rank] and not top:
                points = np.concatenate(outlines[rank]).reshape(-1, 2)
                x, y = points[points[:, 1].argmin()]
                cv2.putText(out, f"{float(poses.confidence[b, order[rank]]):.2f}", (int(x) + 2, int(y) - 2),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.35, COLOURS["other"], 1, cv2.LINE_AA)
        cv2.polylines(out, truth_outline, True, COLOURS["truth"], 1, cv2.LINE_AA)  # over the hypotheses
        label = f"{'obj ' + str(int(poses.obj_id[b])) + ' ' if int(poses.obj_id[b]) else ''}" \
                f"{float(poses.confidence[b].max()):.2f}"
        cv2.putText(out, label, (u0, max(v0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, COLOURS["top"], 1, cv2.LINE_AA)
    return out
