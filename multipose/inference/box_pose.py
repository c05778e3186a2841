"""The AAE's box-to-pose step: a rotation seen in a crop and the crop's box in the image give the object's pose
(the translation from the box's scale and position, the rotation corrected for the off-axis view), as the AAE
does at test time (``DLR-RM/AugmentedAutoencoder``, ``aae_estimate.py``)."""

from __future__ import annotations

import torch

from multipose.core.geometry import off_axis_correction
from multipose.data.views import tight_boxes


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """BOP boxes ``[x, y, w, h]`` to ``[u_min, v_min, u_max, v_max]``: ``(*, 4) -> (*, 4)``."""
    return torch.cat([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], dim=-1)


def coco_extent(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes ``[x, y, w, h]`` in COCO's convention (a detector's, BOP's detections files: ``x, y`` the top-left
    corner of the first pixel, ``w, h`` in pixels) to the extent ``[u_min, v_min, u_max, v_max]`` with pixel
    centres at integer coordinates: half a pixel less. ``(*, 4) -> (*, 4)``."""
    return xywh_to_xyxy(boxes) - 0.5


def box_extent(boxes: torch.Tensor) -> torch.Tensor:
    """BOP ground-truth boxes ``[x, y, w, h]`` (``scene_gt_info.json``: ``x, y`` the first and ``x + w, y + h``
    the last pixel of the silhouette, as bop_toolkit's ``calc_2d_bbox`` computes them) to the silhouette's
    extent ``[u_min, v_min, u_max, v_max]`` with pixel centres at integer coordinates (the convention of our
    renders' tight boxes): half a pixel more on every side. ``(*, 4) -> (*, 4)``. On the test's tiny split
    this takes the AAE translation's depth error from +15 mm to +2..+4 mm."""
    return xywh_to_xyxy(boxes) + torch.tensor([-0.5, -0.5, 0.5, 0.5], dtype=boxes.dtype)


def estimate_translation(
    R: torch.Tensor,
    boxes: torch.Tensor,
    K: torch.Tensor,
    K_train: torch.Tensor,
    radius: float,
    vertices: torch.Tensor,
) -> torch.Tensor:
    """The AAE's translation from a 2D box: ``R (B, 3, 3), boxes (B, 4) [u_min, v_min, u_max, v_max],
    K (B, 3, 3), K_train (3, 3), vertices (V, 3) -> t (B, 3)`` (mm).

    The model is projected at rotation ``R`` and ``t = [0, 0, radius]`` with the training camera
    ``K_train`` (the synthetic render at a known distance; its tight box ``b_r``). Then, with ``b`` the
    test box, ``diag`` a box's diagonal and ``c`` its centre::

        z = radius * diag(b_r) / diag(b) * mean(fx / fx_train, fy / fy_train)
        x = (c_u(b) - cx) z / fx - (c_u(b_r) - cx_train) radius / fx_train      (y alike)

    the second term moving from the box centre to the projection of the model origin.
    """
    B = R.shape[0]
    K_train = K_train.to(R)
    t_train = torch.tensor([0.0, 0.0, float(radius)], dtype=R.dtype, device=R.device).expand(B, 3)
    rendered = tight_boxes(vertices.to(R), R, t_train, K_train)  # (B, 4)
    K = K.to(R)
    boxes = boxes.to(R)
    diag_r = (rendered[:, 2:] - rendered[:, :2]).norm(dim=-1)
    diag = (boxes[:, 2:] - boxes[:, :2]).norm(dim=-1).clamp_min(1e-6)
    ratio = 0.5 * (K[:, 0, 0] / K_train[0, 0] + K[:, 1, 1] / K_train[1, 1])
    z = radius * diag_r / diag * ratio
    centre_r = (rendered[:, :2] + rendered[:, 2:]) / 2 - K_train[:2, 2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 - K[:, :2, 2]
    f, f_train = torch.stack([K[:, 0, 0], K[:, 1, 1]], -1), torch.stack([K_train[0, 0], K_train[1, 1]])
    xy = centre * z[:, None] / f - centre_r * radius / f_train
    return torch.cat([xy, z[:, None]], dim=-1)


def poses_from_boxes(
    R_view: torch.Tensor, boxes: torch.Tensor, K: torch.Tensor, K_train: torch.Tensor, radius: float,
    vertices: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The AAE's poses of ``M`` rotations read from each of ``B`` crops: ``R_view (B, M, 3, 3)`` in the crop's
    view, ``boxes (B, 4)`` and cameras ``K (B, 3, 3)`` -> ``R (B, M, 3, 3), t (B, M, 3)``: the translation
    from the box (:func:`estimate_translation`) and the rotation corrected for it (:func:`correct_rotation`).
    Computed in float64 and returned in ``R_view``'s dtype, so that the poses do not depend on how the crops were
    batched (``predict.py``'s one image against the evaluation's batches)."""
    B, M = R_view.shape[:2]
    dtype, R_view = R_view.dtype, R_view.double()
    t = estimate_translation(R_view.flatten(0, 1), boxes.double().repeat_interleave(M, 0),
                             K.double().repeat_interleave(M, 0), K_train.double(), radius, vertices.double())
    R = correct_rotation(R_view.flatten(0, 1), t)
    return R.reshape(B, M, 3, 3).to(dtype), t.reshape(B, M, 3).to(dtype)


def correct_rotation(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The AAE's correction of a rotation read from a crop of an object off the optical axis:
    ``R (B, 3, 3), t (B, 3) -> (B, 3, 3)``, ``off_axis_correction(t) @ R``
    (:func:`~multipose.core.geometry.off_axis_correction`). Identity for ``t = [0, 0, z]``."""
    return off_axis_correction(t).to(R) @ R
