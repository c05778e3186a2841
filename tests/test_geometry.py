"""Rotations, sphere sampling and camera helpers in the OpenCV / BOP convention."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial import SphericalVoronoi
from scipy.spatial.transform import Rotation

from multipose.core.geometry import (
    camera_rotation_from_sphere_point,
    deserno_sphere_points,
    distance_for_fill,
    euler_views,
    geodesic_angle_deg,
    icosphere_points,
    intrinsics_from_fov,
    matrix_to_rotation_6d,
    project_points,
    random_rotations,
    rotation_6d_to_matrix,
    rotation_about_axis,
    sphere_point_rotations,
)


def _is_rotation(R: torch.Tensor, atol: float = 1e-5) -> bool:
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    return torch.allclose(R @ R.transpose(-1, -2), eye, atol=atol) and torch.allclose(
        torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=R.dtype), atol=atol
    )


def test_random_rotations_are_seeded_and_uniform():
    a = random_rotations(20000, generator=torch.Generator().manual_seed(0))
    b = random_rotations(20000, generator=torch.Generator().manual_seed(0))
    c = random_rotations(20000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert _is_rotation(a)
    # the mean of Haar-uniform rotations is the zero matrix; a biased sampler would not average out
    assert a.mean(0).abs().max() < 0.02
    # the rotation angle of a uniform rotation has density (1 - cos x) / pi: mean = pi/2 + 2/pi
    angle = geodesic_angle_deg(a, torch.eye(3)).deg2rad()
    assert abs(angle.mean().item() - (math.pi / 2 + 2 / math.pi)) < 0.02


def test_geodesic_angle_in_degrees(device):
    R = rotation_about_axis([1.0, 2.0, 3.0], torch.tensor([0.0, 37.0, 90.0, 179.0])).to(device)
    eye = torch.eye(3, device=device)
    torch.testing.assert_close(
        geodesic_angle_deg(R, eye), torch.tensor([0.0, 37.0, 90.0, 179.0], device=device), atol=1e-3, rtol=0
    )
    # symmetric and invariant to a common rotation
    Q = random_rotations(1, generator=torch.Generator().manual_seed(4)).to(device)
    torch.testing.assert_close(geodesic_angle_deg(Q @ R, Q @ eye), geodesic_angle_deg(eye, R), atol=1e-3, rtol=0)


def test_six_d_representation_stacks_rows():
    """PyTorch3D's convention (ours): the 6D vector is the first two *rows* of the matrix."""
    R = random_rotations(4, generator=torch.Generator().manual_seed(2))
    six = matrix_to_rotation_6d(R)
    torch.testing.assert_close(six, R[:, :2, :].reshape(4, 6))
    torch.testing.assert_close(rotation_6d_to_matrix(six), R, atol=1e-6, rtol=0)
    # the original's column stacking gives the transpose
    torch.testing.assert_close(
        rotation_6d_to_matrix(R.transpose(1, 2)[:, :2, :].reshape(4, 6)), R.transpose(1, 2), atol=1e-6, rtol=0
    )


def test_euler_views_are_extrinsic_xyz_in_degrees():
    R = euler_views([[90, 0, 0], [0, 0, 0], [10, 20, 30]])
    assert R.shape == (3, 3, 3) and R.dtype == torch.float32
    torch.testing.assert_close(R[0] @ torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(R[1], torch.eye(3))
    # extrinsic xyz = first about x, then y, then z (fixed axes): R = Rz Ry Rx
    Rx, Ry, Rz = (rotation_about_axis(axis, a) for axis, a in (([1, 0, 0], 10.0), ([0, 1, 0], 20.0), ([0, 0, 1], 30.0)))
    torch.testing.assert_close(R[2], Rz @ Ry @ Rx, atol=1e-6, rtol=0)


def test_deserno_points_are_nearly_equal_area():
    spherical, cartesian = deserno_sphere_points(2000)
    assert 0.97 * 2000 <= len(cartesian) <= 2000
    np.testing.assert_allclose(np.linalg.norm(cartesian, axis=1), 1.0, atol=1e-12)
    assert spherical[:, 0].min() > 0 and spherical[:, 0].max() < math.pi
    areas = SphericalVoronoi(cartesian).calculate_areas()
    assert areas.std() / areas.mean() < 0.1
    with pytest.raises(ValueError):
        deserno_sphere_points(0)


def test_deserno_points_are_the_originals_point_set():
    """The original's eqv_dist_points rounds the band and point counts down: 2,000 asked -> 1,984 points,
    and point 500 (the original's REFERENCE_NUM) at theta 1.08747438, phi 0.53097341 (computed with
    the original's function)."""
    spherical, cartesian = deserno_sphere_points(2000)
    assert len(spherical) == 1984
    np.testing.assert_allclose(spherical[500], [1.08747438, 0.53097341], atol=1e-8)
    np.testing.assert_allclose(cartesian[500], [np.sin(1.08747438) * np.cos(0.53097341),
                                                np.sin(1.08747438) * np.sin(0.53097341), np.cos(1.08747438)], atol=1e-8)
    assert len(deserno_sphere_points(2562)[0]) == 2540
    with pytest.raises(ValueError, match="at least 2"):
        deserno_sphere_points(1)


def test_icosphere_points_are_the_aae_codebook_viewpoints():
    """hinter_sampling: the smallest refined icosahedron with at least n vertices (2,562 for the AAE)."""
    for n, expected in ((1, 12), (12, 12), (13, 42), (162, 162), (2000, 2562), (2562, 2562)):
        assert len(icosphere_points(n)) == expected, n
    points = icosphere_points(2562)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, atol=1e-12)
    assert len(np.unique(points.round(9), axis=0)) == 2562
    areas = SphericalVoronoi(points).calculate_areas()
    assert areas.std() / areas.mean() < 0.15  # nearly uniform (pentagon cells are a bit smaller)
    nearest = np.sort(points @ points.T, axis=1)[:, -2]  # cosine to the nearest other vertex
    gaps = np.degrees(np.arccos(nearest))
    assert 3.5 < gaps.min() and gaps.max() < 5.0  # 4.0 to 4.7 degrees between neighbours
    with pytest.raises(ValueError):
        icosphere_points(0)


def test_sphere_point_rotations_pose_the_object_as_the_original_landscape():
    """The original rendered Rotation.from_euler('yz', [theta, phi]) as PyTorch3D's R; ours is the same
    pose in OpenCV terms: the viewing direction in the model frame is the point, and points on one
    latitude circle differ only by a turn about the model z axis."""
    spherical, cartesian = deserno_sphere_points(50)
    R = sphere_point_rotations(spherical).double()
    M = torch.from_numpy(Rotation.from_euler("yz", spherical).as_matrix())
    torch.testing.assert_close(
        R, torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64)) @ M.transpose(1, 2), atol=1e-6, rtol=0
    )
    assert _is_rotation(R)
    # camera centre in model coordinates, for t = [0, 0, 1]: c = -R^T t = -p
    centre = -(R.transpose(1, 2) @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(centre, -torch.from_numpy(cartesian), atol=1e-6, rtol=0)
    # same theta, different phi: R2 = R1 @ Rz(phi1 - phi2) (a turn about the model z axis)
    same_band = np.nonzero(np.isclose(spherical[:, 0], spherical[10, 0]))[0]
    a, b = same_band[0], same_band[1]
    turn = rotation_about_axis([0, 0, 1], float(np.degrees(spherical[a, 1] - spherical[b, 1]))).double()
    torch.testing.assert_close(R[b], R[a] @ turn, atol=1e-6, rtol=0)


def test_camera_rotation_looks_at_the_origin_with_model_up_up():
    _, points = deserno_sphere_points(100)
    p = torch.from_numpy(points).float()
    R = camera_rotation_from_sphere_point(p)
    assert _is_rotation(R)
    # the model origin seen from a camera at distance d along p is straight ahead: R p = (0, 0, -1)
    torch.testing.assert_close(
        (R @ p[:, :, None])[..., 0], torch.tensor([0.0, 0.0, -1.0]).expand(len(p), 3), atol=1e-5, rtol=0
    )
    # a side view: the model's +z axis points up in the image (negative camera y)
    side = camera_rotation_from_sphere_point(torch.tensor([[1.0, 0.0, 0.0]]))
    assert (side[0] @ torch.tensor([0.0, 0.0, 1.0]))[1] < -0.99
    # in-plane roll is a rotation about the optical axis
    rolled = camera_rotation_from_sphere_point(p, 90.0)
    torch.testing.assert_close(rolled, rotation_about_axis([0, 0, 1], 90.0) @ R, atol=1e-5, rtol=0)
    # looking straight down the z axis is not degenerate
    assert _is_rotation(camera_rotation_from_sphere_point(torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -1.0]])))


def test_intrinsics_from_fov_span_the_whole_image():
    K = intrinsics_from_fov(60.0, 64)
    half = math.tan(math.radians(30.0))
    # rays at +-fov/2 hit the outer edges of the outermost pixels (-0.5 and S - 0.5)
    v = K @ torch.tensor([0.0, half, 1.0])
    assert abs(v[1].item() - 63.5) < 1e-4
    v = K @ torch.tensor([-half, 0.0, 1.0])
    assert abs(v[0].item() + 0.5) < 1e-4


def test_distance_for_fill_makes_the_sphere_fill_that_fraction():
    r, fov, fill = 50.0, 40.0, 0.6
    d = distance_for_fill(r, fov, fill)
    silhouette_half = math.tan(math.asin(r / d))
    assert abs(silhouette_half / math.tan(math.radians(fov / 2)) - fill) < 1e-9
    with pytest.raises(ValueError):
        distance_for_fill(r, fov, 1.5)


def test_project_points_matches_opencv():
    gen = torch.Generator().manual_seed(9)
    pts = torch.randn(1, 20, 3, generator=gen, dtype=torch.float64) * 30
    R = random_rotations(1, generator=gen).double()
    t = torch.tensor([[5.0, -3.0, 400.0]], dtype=torch.float64)
    K = intrinsics_from_fov(30.0, 128).double()[None]
    uv, z = project_points(pts, R, t, K)
    rvec, _ = cv2.Rodrigues(R[0].numpy())
    expected, _ = cv2.projectPoints(pts[0].numpy(), rvec, t[0].numpy(), K[0].numpy(), None)
    np.testing.assert_allclose(uv[0].numpy(), expected[:, 0], atol=1e-8)
    np.testing.assert_allclose(z[0].numpy(), (pts[0] @ R[0].T + t[0])[:, 2].numpy())


def test_geodesic_angle_gradient_is_finite_at_0_and_180_degrees():
    R = rotation_about_axis([0.0, 1.0, 0.0], torch.tensor([0.0, 180.0]))
    six = matrix_to_rotation_6d(R).requires_grad_(True)
    angle = geodesic_angle_deg(rotation_6d_to_matrix(six), torch.eye(3))
    angle.sum().backward()
    assert torch.isfinite(six.grad).all()
    assert angle[0].item() == 0.0 and abs(angle[1].item() - 180.0) < 1e-3
