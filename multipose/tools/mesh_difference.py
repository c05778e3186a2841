"""How far the decimated loss mesh is from the full model: depth and silhouette differences of the two seen
by the same loss camera (``preview.py``, ``benchmarks/render.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from multipose.core.render import LossView


@dataclass(frozen=True)
class MeshDifference:
    """How much a simplified mesh's depth maps differ from the full mesh's (same poses).

    Attributes:
        mean_abs_depth_mm: mean ``|depth_full - depth_simplified|`` over pixels covered in both.
        p95_abs_depth_mm: its 95th percentile.
        silhouette_iou: mean over views of ``|M_full & M_simple| / |M_full | M_simple|``.
        num_views: number of poses compared.
    """

    mean_abs_depth_mm: float
    p95_abs_depth_mm: float
    silhouette_iou: float
    num_views: int


@torch.no_grad()
def mesh_difference(
    full: LossView, simplified: LossView, R: torch.Tensor, batch_size: int = 32
) -> MeshDifference:
    """Compare two loss views (same camera, different meshes) over rotations ``R (N, 3, 3)``."""
    errors, ious = [], []
    for start in range(0, R.shape[0], batch_size):
        Rb = R[start : start + batch_size]
        a, b = full(Rb), simplified(Rb)
        both = (a.mask > 0) & (b.mask > 0)
        either = (a.mask > 0) | (b.mask > 0)
        errors.append((a.depth - b.depth).abs()[both].cpu())
        ious.append((both.sum((1, 2)) / either.sum((1, 2)).clamp_min(1)).cpu())
    err = torch.cat(errors)
    return MeshDifference(
        mean_abs_depth_mm=float(err.mean()) if err.numel() else float("nan"),
        p95_abs_depth_mm=float(np.percentile(err.numpy(), 95)) if err.numel() else float("nan"),
        silhouette_iou=float(torch.cat(ious).mean()),
        num_views=int(R.shape[0]),
    )
