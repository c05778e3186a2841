"""Pose-error functions of the BOP benchmark, batched in torch: one small pure function per metric.

Follows ``bop_toolkit_lib/pose_error.py`` and ``visibility.py`` (Hodan, Michel et al., "BOP: Benchmark
for 6D Object Pose Estimation", ECCV 2018; Hodan et al., "On Evaluation of 6D Object Pose Estimation",
ECCVW 2016). Conventions (:mod:`multipose.core.geometry`): OpenCV model-to-camera poses, millimetres,
depth maps ``(B, H, W)`` hold camera z in mm with 0 where nothing is seen, pixel centres at integer
coordinates. Functions take tensors on any device and return tensors on the same device; nothing here
renders, loads or moves data.

- :func:`vsd` -- Visible Surface Discrepancy (step or truncated-linear cost, BOP'19 visibility);
- :func:`re` -- rotation error (geodesic angle, degrees); :func:`re_sym` -- its minimum over symmetries;
- :func:`te` -- translation error (mm);
- :func:`symmetry_transformations` -- a ``models_info.json`` entry's symmetries, continuous ones sampled;
- :func:`recall` / :func:`recall_curve` -- fraction of errors below a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from multipose.core.geometry import geodesic_angle_deg

__all__ = [
    "VISIB_MODES",
    "VSD_COSTS",
    "depth_to_distance",
    "mcnemar_exact",
    "mspd",
    "mssd",
    "re",
    "re_sym",
    "recall",
    "recall_curve",
    "symmetry_transformations",
    "te",
    "visibility_masks",
    "vsd",
]

#: Pixel-wise matching costs of :func:`vsd`.
VSD_COSTS = ("step", "tlinear")
#: Visibility modes of :func:`visibility_masks` (BOP's ``visib_mode``).
VISIB_MODES = ("bop19", "bop18")


def _check_depths(*depths: torch.Tensor) -> None:
    shape = depths[0].shape
    if len(shape) < 2:
        raise ValueError(f"depth maps must be (*, H, W), got {tuple(shape)}")
    for d in depths[1:]:
        if d.shape != shape:
            raise ValueError(f"depth maps must have one shape, got {tuple(shape)} and {tuple(d.shape)}")


def depth_to_distance(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Depth (camera z) to distance from the camera centre: ``(*, H, W), (*, 3, 3) -> (*, H, W)``.

    ``dist(u, v) = z * sqrt(1 + ((u - cx) / fx)^2 + ((v - cy) / fy)^2)`` (BOP's
    ``depth_im_to_dist_im_fast``; ``u`` = column, ``v`` = row); 0 stays 0.
    """
    if K.shape[-2:] != (3, 3) or K.shape[:-2] != depth.shape[:-2]:
        raise ValueError(f"K must be (*, 3, 3) matching depth (*, H, W), got {tuple(K.shape)} and {tuple(depth.shape)}")
    H, W = depth.shape[-2:]
    K = K.to(depth.dtype)
    u = torch.arange(W, device=depth.device, dtype=depth.dtype)
    v = torch.arange(H, device=depth.device, dtype=depth.dtype)
    x = (u - K[..., 0, 2, None]) / K[..., 0, 0, None]  # (*, W)
    y = (v - K[..., 1, 2, None]) / K[..., 1, 1, None]  # (*, H)
    scale = torch.sqrt(1.0 + x[..., None, :] ** 2 + y[..., :, None] ** 2)  # (*, H, W)
    return depth * scale


def visibility_masks(
    dist_est: torch.Tensor,
    dist_gt: torch.Tensor,
    dist_test: torch.Tensor,
    delta: float,
    visib_mode: str = "bop19",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Visible surface of the model in the ground-truth and the estimated pose (BOP):
    ``(*, H, W)`` x 3 -> ``visib_gt, visib_est`` bool ``(*, H, W)``.

    With ``d_diff = dist_model - dist_test``: ``bop19`` calls a pixel visible where the model is
    rendered and ``d_diff <= delta`` *or the test depth is missing* (0); ``bop18`` requires both
    depths and ``d_diff <= delta``. The estimate is also visible wherever it is rendered inside the
    ground truth's visible mask (Hodan et al. 2016, eq. 14), so an estimate is never hidden by the
    very object it replaces.
    """
    if visib_mode not in VISIB_MODES:
        raise ValueError(f"unknown visib_mode {visib_mode!r}; expected one of {VISIB_MODES}")
    _check_depths(dist_est, dist_gt, dist_test)

    def visible(d_model: torch.Tensor) -> torch.Tensor:
        close = (d_model - dist_test) <= delta
        if visib_mode == "bop19":
            return (close | (dist_test == 0)) & (d_model > 0)
        return close & (dist_test > 0) & (d_model > 0)

    visib_gt = visible(dist_gt)
    visib_est = visible(dist_est) | (visib_gt & (dist_est > 0))
    return visib_gt, visib_est


def _taus(taus: float | Sequence[float], device: torch.device) -> torch.Tensor:
    """``taus`` as a float64 tensor ``(T,)``; ValueError unless one or more positive numbers."""
    taus_t = torch.as_tensor([taus] if isinstance(taus, (int, float)) else list(taus), dtype=torch.float64,
                             device=device)
    if taus_t.ndim != 1 or taus_t.numel() == 0 or not bool((taus_t > 0).all()):
        raise ValueError(f"taus must be one or more positive numbers, got {taus}")
    return taus_t


def vsd(
    depth_est: torch.Tensor,
    depth_gt: torch.Tensor,
    depth_test: torch.Tensor,
    K: torch.Tensor,
    delta: float = 15.0,
    taus: float | Sequence[float] = (20.0,),
    *,
    normalized_by_diameter: bool = False,
    diameter: float | None = None,
    cost_type: str = "step",
    visib_mode: str = "bop19",
) -> torch.Tensor:
    """Visible Surface Discrepancy: ``(*, H, W)`` x 3, ``K (*, 3, 3)`` -> errors ``(*, T)`` in [0, 1].

    ``depth_est`` / ``depth_gt`` are the model rendered in the estimated / ground-truth pose and
    ``depth_test`` the test (scene) depth, all with intrinsics ``K``; depths become distances from
    the camera centre (:func:`depth_to_distance`). With the visible masks ``V_est``, ``V_gt``
    (:func:`visibility_masks`, tolerance ``delta`` mm)::

        e_VSD = ( sum_{p in V_est & V_gt} c(p) + |(V_est | V_gt) \\ (V_est & V_gt)| ) / |V_est | V_gt|

    with the pixel cost ``c(p) = 1 if |D_est(p) - D_gt(p)| >= tau else 0`` (``"step"``, BOP since
    2017) or ``min(1, |D_est(p) - D_gt(p)| / tau)`` (``"tlinear"``, the 2016 definition), one error per
    ``tau`` in ``taus`` (mm, or fractions of ``diameter`` with ``normalized_by_diameter``). Pixels
    seen in only one of the two poses cost 1.

    Edge case (as bop_toolkit): an empty union -- neither pose is visible -- gives error 1.0.
    """
    if cost_type not in VSD_COSTS:
        raise ValueError(f"unknown cost_type {cost_type!r}; expected one of {VSD_COSTS}")
    if normalized_by_diameter and (diameter is None or not diameter > 0):
        raise ValueError("normalized_by_diameter needs the object's diameter > 0")
    _check_depths(depth_est, depth_gt, depth_test)
    taus_t = _taus(taus, depth_gt.device)
    dtype = torch.float64  # distances of ~1 m compared at 0.1 mm: float32 is enough, float64 is free here
    dist_est = depth_to_distance(depth_est.to(dtype), K)
    dist_gt = depth_to_distance(depth_gt.to(dtype), K)
    dist_test = depth_to_distance(depth_test.to(dtype), K)
    visib_gt, visib_est = visibility_masks(dist_est, dist_gt, dist_test, delta, visib_mode)
    inter = visib_gt & visib_est
    union_count = (visib_gt | visib_est).flatten(-2).sum(-1)  # (*)
    comp_count = union_count - inter.flatten(-2).sum(-1)
    dists = (dist_gt - dist_est).abs()
    if normalized_by_diameter:
        assert diameter is not None  # checked above
        dists = dists / float(diameter)
    dists = dists.flatten(-2)[..., None, :]  # (*, 1, P)
    tau = taus_t[:, None]  # (T, 1)
    if cost_type == "step":
        costs = (dists >= tau).to(dtype)
    else:
        costs = (dists / tau).clamp(max=1.0)
    cost_sum = (costs * inter.flatten(-2)[..., None, :]).sum(-1)  # (*, T)
    errors = (cost_sum + comp_count[..., None]) / union_count[..., None].clamp_min(1)
    errors = torch.where(union_count[..., None] == 0, torch.ones_like(errors), errors)
    return errors.to(depth_gt.dtype if depth_gt.is_floating_point() else torch.float32)


def re(R_est: torch.Tensor, R_gt: torch.Tensor) -> torch.Tensor:
    """Rotation error in degrees: ``(*, 3, 3), (*, 3, 3) -> (*)``.

    ``e_RE = arccos((trace(R_est R_gt^T) - 1) / 2)``, in [0, 180]; evaluated without the
    cancellation of ``arccos`` near 0 (:func:`multipose.core.geometry.geodesic_angle_deg`).
    """
    if R_est.shape[-2:] != (3, 3) or R_gt.shape[-2:] != (3, 3):
        raise ValueError(f"rotations must be (*, 3, 3), got {tuple(R_est.shape)} and {tuple(R_gt.shape)}")
    return geodesic_angle_deg(R_est, R_gt)


def re_sym(R_est: torch.Tensor, R_gt: torch.Tensor, symmetries: torch.Tensor | None) -> torch.Tensor:
    """Symmetry-aware rotation error in degrees: ``(*, 3, 3), (*, 3, 3), (S, 3, 3) -> (*)``.

    ``e = min_s e_RE(R_est, R_gt S_s)`` over the object's symmetry rotations ``S_s`` (model frame;
    :func:`symmetry_transformations`, which includes the identity). ``symmetries`` None or empty: plain
    :func:`re`.
    """
    if symmetries is None or symmetries.numel() == 0:
        return re(R_est, R_gt)
    if symmetries.ndim != 3 or symmetries.shape[1:] != (3, 3):
        raise ValueError(f"symmetries must be (S, 3, 3), got {tuple(symmetries.shape)}")
    R_est, R_gt = torch.broadcast_tensors(R_est, R_gt)
    R_gt_sym = R_gt[..., None, :, :] @ symmetries.to(R_gt)  # (*, S, 3, 3)
    return re(R_est[..., None, :, :], R_gt_sym).amin(dim=-1)


def te(t_est: torch.Tensor, t_gt: torch.Tensor) -> torch.Tensor:
    """Translation error in mm: ``(*, 3), (*, 3) -> (*)``, ``e_TE = ||t_est - t_gt||_2``."""
    if t_est.shape[-1] != 3 or t_gt.shape[-1] != 3:
        raise ValueError(f"translations must be (*, 3), got {tuple(t_est.shape)} and {tuple(t_gt.shape)}")
    return (t_est - t_gt).norm(dim=-1)


def _symmetric_gt_points(
    R_gt: torch.Tensor, t_gt: torch.Tensor, points: torch.Tensor, sym_R: torch.Tensor, sym_t: torch.Tensor
) -> torch.Tensor:
    """The model points in every symmetric ground-truth pose ``(R_gt S_R, R_gt S_t + t_gt)``: ``(*, S, P, 3)``."""
    R = R_gt[..., None, :, :] @ sym_R.to(R_gt)  # (*, S, 3, 3)
    t = (R_gt[..., None, :, :] @ sym_t.to(R_gt)[..., None])[..., 0] + t_gt[..., None, :]  # (*, S, 3)
    return points.to(R_gt) @ R.transpose(-1, -2) + t[..., None, :]


def mssd(
    R_est: torch.Tensor, t_est: torch.Tensor, R_gt: torch.Tensor, t_gt: torch.Tensor, points: torch.Tensor,
    sym_R: torch.Tensor, sym_t: torch.Tensor,
) -> torch.Tensor:
    """Maximum Symmetry-aware Surface Distance (BOP19, ``bop_toolkit_lib.pose_error.mssd``), mm:
    ``R (*, 3, 3), t (*, 3)`` estimated and ground truth, model ``points (P, 3)``, the symmetries
    ``sym_R (S, 3, 3), sym_t (S, 3)`` (:func:`symmetry_transformations`) -> ``(*)``: the smallest, over the
    symmetries, of the largest distance between a model point in the two poses."""
    est = points.to(R_est) @ R_est.transpose(-1, -2) + t_est[..., None, :]  # (*, P, 3)
    gt = _symmetric_gt_points(R_gt, t_gt, points, sym_R, sym_t)
    return (est[..., None, :, :] - gt).norm(dim=-1).amax(dim=-1).amin(dim=-1)


def mspd(
    R_est: torch.Tensor, t_est: torch.Tensor, R_gt: torch.Tensor, t_gt: torch.Tensor, K: torch.Tensor,
    points: torch.Tensor, sym_R: torch.Tensor, sym_t: torch.Tensor,
) -> torch.Tensor:
    """Maximum Symmetry-aware Projection Distance (BOP19, ``bop_toolkit_lib.pose_error.mspd``), pixels: as
    :func:`mssd` with the points projected by the intrinsics ``K (*, 3, 3)``."""

    def project(p: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        uvw = p @ K.transpose(-1, -2)
        return uvw[..., :2] / uvw[..., 2:]

    est = project(points.to(R_est) @ R_est.transpose(-1, -2) + t_est[..., None, :], K)  # (*, P, 2)
    gt = project(_symmetric_gt_points(R_gt, t_gt, points, sym_R, sym_t), K[..., None, :, :].to(R_gt))
    return (est[..., None, :, :] - gt).norm(dim=-1).amax(dim=-1).amin(dim=-1)


def symmetry_transformations(
    model_info: Mapping[str, Any], max_sym_disc_step: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """The symmetries of one ``models_info.json`` entry: ``R (S, 3, 3)``, ``t (S, 3)`` float64 (mm).

    As ``bop_toolkit_lib.misc.get_symmetry_transformations``: the identity plus every
    ``symmetries_discrete`` entry (a row-major 4x4 matrix, 16 numbers); each ``symmetries_continuous``
    entry (``axis``, ``offset``) is sampled at ``n = ceil(pi / max_sym_disc_step)`` angles
    ``2 pi i / n`` (so the point furthest from the axis moves at most ``max_sym_disc_step`` of the
    diameter per step), with ``t = offset - R offset``; then every continuous one is composed with
    every discrete one (``R = R_cont R_disc``, ``t = R_cont t_disc + t_cont``). An entry without
    symmetries gives the identity alone (S = 1).
    """
    if not max_sym_disc_step > 0:
        raise ValueError(f"max_sym_disc_step must be > 0, got {max_sym_disc_step}")
    disc = [(np.eye(3), np.zeros(3))]
    for sym in model_info.get("symmetries_discrete", []) or []:
        m = np.asarray(sym, dtype=np.float64).reshape(-1)
        if m.size != 16 or not np.all(np.isfinite(m)):
            raise ValueError(f"a discrete symmetry must be 16 finite numbers (row-major 4x4), got {sym!r}")
        m44 = m.reshape(4, 4)
        disc.append((m44[:3, :3], m44[:3, 3]))
    cont = []
    for sym in model_info.get("symmetries_continuous", []) or []:
        axis = np.asarray(sym.get("axis"), dtype=np.float64).reshape(-1)
        offset = np.asarray(sym.get("offset", [0.0, 0.0, 0.0]), dtype=np.float64).reshape(-1)
        if axis.size != 3 or offset.size != 3 or not np.linalg.norm(axis) > 0:
            raise ValueError(f"a continuous symmetry needs a non-zero 3D axis and a 3D offset, got {sym!r}")
        steps = int(math.ceil(math.pi / max_sym_disc_step))
        angles = 2.0 * math.pi * np.arange(steps) / steps
        rots = Rotation.from_rotvec(angles[:, None] * (axis / np.linalg.norm(axis))[None]).as_matrix()
        cont += [(r, offset - r @ offset) for r in rots]
    pairs = disc if not cont else [(rc @ rd, rc @ td + tc) for rd, td in disc for rc, tc in cont]
    R = torch.from_numpy(np.stack([p[0] for p in pairs]))
    t = torch.from_numpy(np.stack([p[1] for p in pairs]))
    return R, t


def recall(errors: torch.Tensor, threshold: float) -> float:
    """Fraction of errors strictly below ``threshold`` (BOP: an estimate is correct if ``e < theta``):
    ``(N,) -> float`` in [0, 1]. Raises ``ValueError`` for no errors (a recall of nothing is undefined)."""
    errors = torch.as_tensor(errors).reshape(-1)
    if errors.numel() == 0:
        raise ValueError("recall of an empty set of errors is undefined")
    return float((errors < threshold).double().mean())


def mcnemar_exact(a_correct: torch.Tensor, b_correct: torch.Tensor) -> dict[str, float | int]:
    """McNemar's exact test of two methods scored on the same instances, ``(N,) bool, (N,) bool``:
    ``only_a`` and ``only_b`` (instances only that method got right) and ``p``, the two-sided binomial
    p-value of ``only_a`` out of ``only_a + only_b`` at 1/2 (``scipy.stats.binomtest``; 1.0 when no
    instance is discordant)."""
    from scipy.stats import binomtest  # lazy: the metrics import fast, scipy.stats takes ~0.5 s

    a, b = torch.as_tensor(a_correct).bool().reshape(-1), torch.as_tensor(b_correct).bool().reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"the two methods were scored on different instances: {tuple(a.shape)}, {tuple(b.shape)}")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_a": only_a, "only_b": only_b, "p": float(p)}


def recall_curve(errors: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """:func:`recall` at every threshold: ``(N,), (T,) -> (T,)`` float64."""
    errors = torch.as_tensor(errors).reshape(-1).double()
    if errors.numel() == 0:
        raise ValueError("recall of an empty set of errors is undefined")
    thresholds = torch.as_tensor(thresholds, dtype=torch.float64, device=errors.device).reshape(-1)
    return (errors[None, :] < thresholds[:, None]).double().mean(dim=1)
