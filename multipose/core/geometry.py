"""Rotations, cameras and sphere sampling in one convention.

Convention (everywhere in multipose): a pose is OpenCV / BOP model-to-camera,
``x_cam = R @ x_model + t``, the camera looks down +z, image x right and y down, units millimetres.
Pixel centres sit at integer coordinates (``cv2.projectPoints`` convention). Rotation matrices are
``(*, 3, 3)``, translations ``(*, 3)``, intrinsics ``K`` ``(*, 3, 3)``.

6D representation: PyTorch3D's (:func:`pytorch3d.transforms.rotation_6d_to_matrix`, Zhou et al.,
CVPR 2019): the two 3-vectors become the first two *rows* of the matrix after Gram-Schmidt. The
original research code stacked them as *columns*; its matrices are the transpose of ours.

Only :mod:`multipose.core.render` knows PyTorch3D's camera convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from pytorch3d.transforms import (
    matrix_to_rotation_6d,
    quaternion_to_matrix,
    rotation_6d_to_matrix,
    standardize_quaternion,
)
from pytorch3d.transforms import (
    random_rotations as _p3d_random_rotations,
)
from scipy.spatial.transform import Rotation

__all__ = [
    "camera_rotation_from_sphere_point",
    "deserno_sphere_points",
    "distance_for_fill",
    "euler_views",
    "geodesic_angle_deg",
    "icosphere_points",
    "intrinsics_from_fov",
    "matrix_to_rotation_6d",
    "off_axis_correction",
    "opencv_from_pytorch3d_camera",
    "project_points",
    "random_rotations",
    "rotation_6d_to_matrix",
    "rotation_about_axis",
    "sphere_point_rotations",
]


def random_rotations(
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Rotations drawn uniformly from SO(3): ``() -> (n, 3, 3)``.

    Without ``generator`` this is :func:`pytorch3d.transforms.random_rotations` (global RNG).
    With one, unit quaternions are drawn from a normalised 4-D Gaussian (uniform on SO(3),
    Shoemake 1992) using that generator, so a stream can be replayed independently of other RNG use.
    """
    if generator is None:
        return _p3d_random_rotations(n, dtype=dtype, device=device)
    q = torch.randn(n, 4, generator=generator, device=generator.device, dtype=torch.float64)
    q = standardize_quaternion(q / q.norm(dim=-1, keepdim=True))
    return quaternion_to_matrix(q).to(device=device or generator.device, dtype=dtype)


def geodesic_angle_deg(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """Geodesic distance between rotations in degrees: ``(*, 3, 3), (*, 3, 3) -> (*)``.

    ``angle = arccos((trace(R1^T R2) - 1) / 2)``, evaluated without the cancellation of ``arccos``
    near 0 degrees: ``||R1 - R2||_F = 2 sqrt(2) sin(angle / 2)`` and
    ``sqrt(trace(R1^T R2) + 1) = 2 cos(angle / 2)``, so
    ``angle = 2 atan2(||R1 - R2||_F / sqrt(2), sqrt(trace + 1))``. Exact at 0 (with a zero
    gradient there) and finite-gradient everywhere, unlike
    :func:`pytorch3d.transforms.so3_relative_angle`, whose cosine bound adds 0.4 degrees at 0.
    """
    R1, R2 = torch.broadcast_tensors(R1, R2)
    sin_half = (R1 - R2).flatten(-2).norm(dim=-1) / math.sqrt(2.0)
    trace = (R1 * R2).sum(dim=(-1, -2))  # trace(R1^T R2)
    cos_half = (trace + 1.0).clamp_min(1e-12).sqrt()
    return torch.rad2deg(2.0 * torch.atan2(sin_half, cos_half))


def euler_views(views_deg: Sequence[Sequence[float]]) -> torch.Tensor:
    """Rotation matrices from Euler triples ``(V, 3) -> (V, 3, 3)``, float32.

    scipy's extrinsic ``"xyz"`` convention in degrees, as the original's view lists
    (``Rotation.from_euler('xyz', view, degrees=True)``).
    """
    angles = np.asarray(views_deg, dtype=np.float64).reshape(-1, 3)
    return torch.from_numpy(Rotation.from_euler("xyz", angles, degrees=True).as_matrix()).float()


def rotation_about_axis(axis: Sequence[float], angle_deg: torch.Tensor | float) -> torch.Tensor:
    """Rotation by ``angle_deg`` about the unit vector ``axis``: ``(*) -> (*, 3, 3)`` float32."""
    angle = torch.as_tensor(angle_deg, dtype=torch.float64)
    rotvec = np.asarray(axis, dtype=np.float64)
    rotvec = rotvec / np.linalg.norm(rotvec)
    flat = angle.reshape(-1, 1).numpy() * rotvec[None] * (math.pi / 180.0)
    mats = torch.from_numpy(Rotation.from_rotvec(flat).as_matrix()).float()
    return mats.reshape(*angle.shape, 3, 3)


def deserno_sphere_points(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-area points on the unit sphere (Deserno, "How to generate equidistributed points on the
    surface of a sphere", 2004): exactly the original's ``eqv_dist_points`` (same count, same order).

    The sphere is cut into ``M_theta = floor(pi / d)`` latitude bands, ``d = sqrt(4 pi / n)``; band
    ``m`` (polar angle ``theta = pi (m + 1/2) / M_theta``) gets ``floor(2 pi sin(theta) / d_phi)``
    points at ``phi = 2 pi k / M_phi``, ``d_phi = (4 pi / n) / (pi / M_theta)``. Rounding down makes
    fewer points than asked: 1,984 for n = 2,000. Every point covers an area of about ``4 pi / n``.

    Returns ``spherical (M, 2)`` as ``[theta, phi]`` in radians (polar angle from +z, azimuth) and
    ``cartesian (M, 3)`` unit vectors. Raises ``ValueError`` when ``n`` gives no point (n < 2).
    """
    if n < 1:
        raise ValueError(f"need at least one point on the sphere, got n={n}")
    area = 4.0 * math.pi / n
    d = math.sqrt(area)
    m_theta = math.floor(math.pi / d)
    if m_theta < 1:
        raise ValueError(f"n={n} gives no equal-area point on the sphere; ask for at least 2")
    d_theta = math.pi / m_theta
    d_phi = area / d_theta
    thetas, phis = [], []
    for m in range(m_theta):
        theta_m = math.pi * (m + 0.5) / m_theta
        m_phi = math.floor(2.0 * math.pi * math.sin(theta_m) / d_phi)
        k = np.arange(m_phi)
        thetas.append(np.full(m_phi, theta_m))
        phis.append(2.0 * math.pi * k / max(m_phi, 1))
    theta = np.concatenate(thetas)
    phi = np.concatenate(phis)
    spherical = np.stack([theta, phi], axis=1)
    cartesian = np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=1
    )
    return spherical, cartesian


def icosphere_points(min_points: int) -> np.ndarray:
    """Viewpoints of the AAE's codebook: the vertices of an icosahedron refined until there are at
    least ``min_points`` (Hinterstoisser et al., BMVC 2008, the AAE's and bop_toolkit's
    ``hinter_sampling``): ``(10 * 4**k + 2, 3)`` unit vectors, i.e. 12, 42, 162, 642, 2,562, ...
    (``trimesh.creation.icosphere``: every edge split at its midpoint, projected to the sphere)."""
    import trimesh  # lazy: only the codebook needs it

    if min_points < 1:
        raise ValueError(f"need at least one point on the sphere, got {min_points}")
    level = 0
    while 10 * 4**level + 2 < min_points:
        level += 1
    return np.asarray(trimesh.creation.icosphere(subdivisions=level).vertices, dtype=np.float64)


def opencv_from_pytorch3d_camera(R: torch.Tensor) -> torch.Tensor:
    """The OpenCV model-to-camera pose of a PyTorch3D camera rotation ``R`` (row vectors, world-to-view
    ``x @ R``, +x left, +y up): ``diag(-1, -1, 1) @ R^T``, ``(*, 3, 3) -> (*, 3, 3)``. The original code
    posed its renders (training views, loss, landscape) with such rotations."""
    return R.transpose(-1, -2) * R.new_tensor([-1.0, -1.0, 1.0])[:, None]


def sphere_point_rotations(spherical: np.ndarray) -> torch.Tensor:
    """Object rotations for sphere points exactly as the original landscape tool posed the object:
    ``(M, 2) [theta, phi] -> (M, 3, 3)``.

    The original passed ``M = Rotation.from_euler('yz', [theta, phi]).as_matrix()`` to PyTorch3D as
    its (row-vector, world-to-view) ``R``; in our OpenCV model-to-camera convention that pose is
    ``R = diag(-1, -1, 1) @ M^T = Rz(180) Ry(-theta) Rz(-phi)``: the model first turns by ``-phi``
    about its own z axis, then tilts by ``theta``. So ``theta`` is the angle between the model's z
    axis and the viewing direction, and poses on one latitude circle differ only by a rotation about
    the model z axis -- the circle of symmetry of a body of revolution about z. The camera sits at
    ``-d * p`` in model coordinates, ``p`` the point's unit vector.
    """
    spherical = np.asarray(spherical, dtype=np.float64).reshape(-1, 2)
    M = torch.from_numpy(Rotation.from_euler("yz", spherical).as_matrix())
    return opencv_from_pytorch3d_camera(M).float()


def camera_rotation_from_sphere_point(
    points: torch.Tensor, inplane_deg: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Model-to-camera rotation of a camera placed on the ray through ``points`` looking at the
    model origin, then rolled by ``inplane_deg`` about its optical axis: ``(N, 3), (N,) -> (N, 3, 3)``.

    The camera's +z axis points from the camera towards the origin (``-p``); its image y axis (down)
    is the projection of the model's -z axis (model "up" = +z appears up in the image), or of -y
    when looking along z. The rows of ``R`` are the camera axes in model coordinates, so
    ``R @ p`` lies on the camera's negative z axis. Rolling by ``a`` applies ``Rz(a) @ R``.
    """
    p = points / points.norm(dim=-1, keepdim=True)
    z_cam = -p
    up = torch.tensor([0.0, 0.0, 1.0], dtype=p.dtype, device=p.device).expand_as(p)
    alt = torch.tensor([0.0, 1.0, 0.0], dtype=p.dtype, device=p.device).expand_as(p)
    near_pole = (z_cam * up).sum(-1, keepdim=True).abs() > 0.999
    up = torch.where(near_pole, alt, up)
    # image y (down) = -up made orthogonal to the viewing direction
    y_cam = -(up - (up * z_cam).sum(-1, keepdim=True) * z_cam)
    y_cam = y_cam / y_cam.norm(dim=-1, keepdim=True)
    x_cam = torch.cross(y_cam, z_cam, dim=-1)
    R = torch.stack([x_cam, y_cam, z_cam], dim=-2)
    inplane = torch.as_tensor(inplane_deg, dtype=p.dtype, device=p.device).expand(p.shape[0])
    roll = rotation_about_axis([0.0, 0.0, 1.0], inplane.cpu()).to(R)
    return roll @ R


def intrinsics_from_fov(fov_deg: float, image_size: int) -> torch.Tensor:
    """Pinhole intrinsics of a square ``image_size`` view with vertical field of view ``fov_deg``.

    ``f = (S / 2) / tan(fov / 2)``; the principal point is the image centre ``(S - 1) / 2`` in the
    integer-pixel-centre convention, so the optical axis passes through the middle of the image.
    Returns ``(3, 3)`` float32.
    """
    f = 0.5 * image_size / math.tan(math.radians(fov_deg) / 2.0)
    c = (image_size - 1) / 2.0
    return torch.tensor([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]], dtype=torch.float32)


def distance_for_fill(radius: float, fov_deg: float, fill: float) -> float:
    """Camera distance at which a sphere of ``radius`` spans ``fill`` of a view with ``fov_deg``.

    The sphere's silhouette has angular half-width ``asin(r / d)``; setting its image half-width
    ``tan(asin(r / d))`` equal to ``fill * tan(fov / 2)`` gives ``d = r * sqrt(1 + 1 / x^2)`` with
    ``x = fill * tan(fov / 2)``.
    """
    if not (radius > 0 and 0 < fill <= 1 and 0 < fov_deg < 180):
        raise ValueError(f"bad arguments radius={radius}, fov_deg={fov_deg}, fill={fill}")
    x = fill * math.tan(math.radians(fov_deg) / 2.0)
    return radius * math.sqrt(1.0 + 1.0 / (x * x))


def project_points(
    points: torch.Tensor, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole projection in our convention: ``(B, N, 3), (B, 3, 3), (B, 3), (B, 3, 3)`` ->
    pixel coordinates ``uv (B, N, 2)`` (integer = pixel centre) and camera depth ``z (B, N)``."""
    cam = points @ R.transpose(-1, -2) + t[:, None, :]
    z = cam[..., 2]
    uvw = cam @ K.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:3], z


def off_axis_correction(t: torch.Tensor) -> torch.Tensor:
    """The AAE's correction for an object off the optical axis: ``t (B, 3) -> C (B, 3, 3)``, so that a rotation
    ``R_view`` read from a crop centred on the object is ``C @ R_view`` in the camera (and a camera rotation ``R``
    is ``C^T @ R`` in the crop's view).

    Training views show the object on the optical axis; an object at ``t`` is seen from a direction
    turned by about ``a_x = atan(t_x / t_z)`` and ``a_y = atan(t_y / t_z)``, so the camera-frame
    rotation is ``R_y(a_x) R_x(-a_y) R`` (``R_x(a)``, ``R_y(a)``: right-handed rotations about the
    camera's x and y axes), which maps the optical axis onto the direction of ``t`` to first order
    (exactly for ``t`` in the xz or yz plane). The identity for ``t = [0, 0, z]``.
    """
    ax = torch.atan2(t[:, 0], t[:, 2])
    ay = torch.atan2(t[:, 1], t[:, 2])
    one, zero = torch.ones_like(ax), torch.zeros_like(ax)
    # R_corr_y of the AAE with d_alpha_x = -ax: [[cos, 0, -sin], [0, 1, 0], [sin, 0, cos]](-ax)
    Ry = torch.stack([torch.cos(ax), zero, torch.sin(ax), zero, one, zero, -torch.sin(ax), zero, torch.cos(ax)],
                     -1).reshape(-1, 3, 3)
    # R_corr_x of the AAE with d_alpha_y = -ay: [[1, 0, 0], [0, cos, -sin], [0, sin, cos]](-ay)
    Rx = torch.stack([one, zero, zero, zero, torch.cos(ay), torch.sin(ay), zero, -torch.sin(ay), torch.cos(ay)],
                     -1).reshape(-1, 3, 3)
    return Ry @ Rx
