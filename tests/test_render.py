"""The renderer: camera convention, analytic depth, the fast depth path against PyTorch3D's own."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from multipose.core.geometry import (
    intrinsics_from_fov,
    matrix_to_rotation_6d,
    random_rotations,
    rotation_6d_to_matrix,
)
from multipose.core.mesh import Mesh, load_mesh, simplify_mesh
from multipose.core.rasterizer import closed_orientation, rasterize_nearest
from multipose.core.render import LossView, MeshRenderer, RenderSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def part() -> Mesh:
    """The committed procedural 2-fold part, decimated so CPU rendering stays fast."""
    return simplify_mesh(load_mesh(REPO_ROOT / "data/cad-files/tless_like_2fold.ply"), 600)


def _plane(corners: np.ndarray) -> Mesh:
    """A planar quad (two triangles) with corners ``(4, 3)`` in order."""
    return Mesh(
        vertices=torch.tensor(corners, dtype=torch.float32),
        faces=torch.tensor([[0, 1, 2], [0, 2, 3]]),
        name="plane",
    )


def test_vertex_projects_onto_rendered_pixel_with_its_depth(part, device):
    """The nearest vertex, projected with cv2.projectPoints, lands on the silhouette at that pixel and
    the rendered depth there equals its camera z (pins the OpenCV convention and the half pixel)."""
    S = 64
    K = intrinsics_from_fov(25.0, S).double()
    renderer = MeshRenderer(part).to(device)
    verts = part.vertices.double().numpy()
    rotations = random_rotations(6, generator=torch.Generator().manual_seed(3)).double()
    for R in rotations:
        t = np.array([0.0, 0.0, 400.0])
        z = (verts @ R.numpy().T + t)[:, 2]
        k = int(np.argmin(z))  # the nearest vertex is never occluded
        rvec, _ = cv2.Rodrigues(R.numpy())
        uv, _ = cv2.projectPoints(verts[k : k + 1], rvec, t, K.numpy(), None)
        # shift the object sideways so that vertex projects exactly onto a pixel centre
        du = np.round(uv[0, 0]) + 0.05 - uv[0, 0]  # 0.05 px off the centre (no edge ties)
        t = t + np.array([du[0], du[1], 0.0]) * z[k] / K[0, 0].item()
        uv, _ = cv2.projectPoints(verts[k : k + 1], rvec, t, K.numpy(), None)
        col, row = np.round(uv[0, 0]).astype(int)
        out = renderer(R[None].float(), torch.tensor(t)[None].float(), K.float(), S)
        assert out.mask[0, row, col] == 1
        slope_tolerance = 0.5  # mm, the bound; the pixel centre is 0.05 px (0.1 mm) away
        assert abs(out.depth[0, row, col].item() - z[k]) < slope_tolerance


@pytest.mark.parametrize("path,rasterizer", [("torch", "torch"), ("pytorch3d", "pytorch3d"), ("torch", "pytorch3d")])
def test_tilted_plane_renders_analytic_depth_and_edges(device, path, rasterizer):
    """A square tilted about the camera's y axis: depth along each pixel ray equals the analytic
    ray/plane intersection; its left/right image edges fall exactly between the expected pixels."""
    S = 48
    f = 100.0
    K = torch.tensor([[f, 0.0, 23.5], [0.0, f, 23.5], [0.0, 0.0, 1.0]])
    z0, half = 300.0, 40.0
    a = np.deg2rad(30.0)
    # plane through (0, 0, z0) with normal n = (sin a, 0, -cos a) in camera coordinates
    ex = np.array([np.cos(a), 0.0, np.sin(a)])
    ey = np.array([0.0, 1.0, 0.0])
    c = np.array([0.0, 0.0, z0])
    corners = np.stack(
        [c - half * ex - half * ey, c + half * ex - half * ey, c + half * ex + half * ey, c - half * ex + half * ey]
    )
    renderer = MeshRenderer(_plane(corners), RenderSettings(depth_gradient=path, rasterizer=rasterizer)).to(device)
    R = torch.eye(3)[None]
    t = torch.zeros(1, 3)
    out = renderer(R.requires_grad_(True), t, K, S)  # requires_grad exercises the differentiable path
    depth, mask = out.depth[0].detach().cpu().numpy(), out.mask[0].cpu().numpy()
    n = np.cross(ex, ey)
    v, u = np.mgrid[0:S, 0:S].astype(np.float64)
    rays = np.stack([(u - 23.5) / f, (v - 23.5) / f, np.ones_like(u)], axis=-1)
    z_expected = (n @ c) / (rays @ n)
    inside = mask > 0
    assert inside.sum() > 400
    np.testing.assert_allclose(depth[inside], z_expected[inside], rtol=1e-4)
    assert np.all(depth[~inside] == 0)
    # image x of the left and right edges (for rows well inside the square)
    x_left = f * (c - half * ex)[0] / (c - half * ex)[2] + 23.5
    x_right = f * (c + half * ex)[0] / (c + half * ex)[2] + 23.5
    cols = np.nonzero(mask[24])[0]
    assert cols.min() == int(np.floor(x_left)) + 1 and cols.max() == int(np.floor(x_right))


def test_torch_rasterizer_matches_pytorch3d_fragments_and_shading(part, device):
    """rasterize_nearest gives PyTorch3D's nearest face, depth and perspective-correct barycentrics at
    (all but edge-tie) pixels, hence the same Phong image; small candidate budgets change nothing."""
    B, S = 12, 56
    gen = torch.Generator().manual_seed(21)
    R = random_rotations(B, generator=gen).to(device)
    t = torch.tensor([0.0, 0.0, 330.0], device=device).repeat(B, 1)
    t[:, :2] += torch.randn(B, 2, generator=gen).to(device) * 15.0  # some views cut by the border
    K = intrinsics_from_fov(30.0, S).to(device).expand(B, 3, 3)
    fragments, rgb = {}, {}
    for name in ("torch", "pytorch3d"):
        renderer = MeshRenderer(part, RenderSettings(rasterizer=name)).to(device)
        fragments[name] = renderer._rasterize(R, t, K, (S, S), faces_per_pixel=1)[0]
        rgb[name] = renderer.render_rgb(R, t, K, S).rgb
    assert closed_orientation(part) == 1  # closed and outward: back faces are culled by the torch path
    ours, ref = fragments["torch"], fragments["pytorch3d"]
    same = ours.pix_to_face == ref.pix_to_face
    assert same.float().mean() > 0.999 and (ref.pix_to_face >= 0).sum() > B * 300
    z_diff = (ours.zbuf[same] - ref.zbuf[same]).abs()  # float32 rounding, largest on grazing faces
    assert z_diff.median() < 1e-3 and z_diff.max() < 0.2
    covered = same & (ref.pix_to_face >= 0)
    assert torch.allclose(ours.bary_coords[covered], ref.bary_coords[covered], atol=1e-3)
    assert (rgb["torch"] - rgb["pytorch3d"]).abs().amax() < 0.02  # edge-tie pixels at most
    grouped = rasterize_nearest(part.vertices.to(device), part.faces.to(device), R, t, K, (S, S), max_candidates=50,
                                cull_backfaces=1)
    assert torch.equal(grouped.pix_to_face, ours.pix_to_face) and torch.equal(grouped.zbuf, ours.zbuf)
    every_face = rasterize_nearest(part.vertices.to(device), part.faces.to(device), R, t, K, (S, S))
    assert (every_face.pix_to_face == ours.pix_to_face).float().mean() > 0.999
    inward = Mesh(vertices=part.vertices, faces=part.faces.flip(1), name="inward")
    assert closed_orientation(inward) == -1 and closed_orientation(_plane(np.eye(4, 3) * 10)) == 0
    flipped = rasterize_nearest(inward.vertices.to(device), inward.faces.to(device), R, t, K, (S, S), cull_backfaces=-1)
    assert torch.equal(flipped.pix_to_face >= 0, ours.pix_to_face >= 0)


def test_fast_depth_matches_pytorch3d_values_and_gradients(part, device):
    """The torch depth path equals PyTorch3D's zbuf and its gradient with respect to the 6D
    rotation parameters and the translation agrees with PyTorch3D's backward (cosine >= 0.999)."""
    B, S = 6, 48
    gen = torch.Generator().manual_seed(7)
    R = random_rotations(B, generator=gen).to(device)
    t = torch.tensor([0.0, 0.0, 350.0], device=device).repeat(B, 1)
    t[:, :2] += torch.randn(B, 2, generator=gen).to(device) * 10.0
    K = intrinsics_from_fov(30.0, S)
    weights = torch.rand(B, S, S, generator=gen).to(device)
    grads, depths = {}, {}
    for path in ("torch", "pytorch3d"):
        renderer = MeshRenderer(part, RenderSettings(depth_gradient=path)).to(device)
        p6 = matrix_to_rotation_6d(R).clone().requires_grad_(True)
        tt = t.clone().requires_grad_(True)
        out = renderer(rotation_6d_to_matrix(p6), tt, K, S)
        (out.depth * weights).sum().backward()
        grads[path] = torch.cat([p6.grad, tt.grad], dim=1)
        depths[path] = out.depth.detach()
    assert torch.allclose(depths["torch"], depths["pytorch3d"], atol=0.01)
    cos = torch.nn.functional.cosine_similarity(grads["torch"], grads["pytorch3d"], dim=1)
    assert torch.all(cos >= 0.999), cos
    assert torch.isfinite(grads["torch"]).all() and (grads["torch"].abs().sum(1) > 0).all()


def test_rotation_about_viewing_axis_has_a_gradient(part, device):
    """Rolling the object about the optical axis changes depth only by surface sliding; the torch
    path must keep that term (fixed barycentrics would give exactly zero)."""
    S = 48
    renderer = MeshRenderer(part, RenderSettings(depth_gradient="torch")).to(device)
    R0 = random_rotations(1, generator=torch.Generator().manual_seed(11)).to(device)
    target = renderer(R0, torch.tensor([[0.0, 0.0, 350.0]], device=device), intrinsics_from_fov(30.0, S), S).depth
    angle = torch.tensor(0.05, device=device, requires_grad=True)
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    roll = torch.stack([torch.stack([c, -s, zero]), torch.stack([s, c, zero]), torch.stack([zero, zero, one])])
    out = renderer(roll[None] @ R0, torch.tensor([[0.0, 0.0, 350.0]], device=device), intrinsics_from_fov(30.0, S), S)
    ((out.depth - target) ** 2).sum().backward()
    assert torch.isfinite(angle.grad) and angle.grad.abs() > 0


def test_any_batch_size_gives_the_same_per_sample_result(part, device):
    renderer = MeshRenderer(part).to(device)
    R = random_rotations(5, generator=torch.Generator().manual_seed(5)).to(device)
    t = torch.tensor([0.0, 0.0, 350.0], device=device).repeat(5, 1)
    K = intrinsics_from_fov(30.0, 32)
    all_at_once = renderer(R, t, K, 32).depth
    one_by_one = torch.cat([renderer(R[i : i + 1], t[i : i + 1], K, 32).depth for i in range(5)])
    assert torch.equal(all_at_once, one_by_one)


def test_soft_depth_is_differentiable_and_close_to_hard_depth(part, device):
    S = 32
    K = intrinsics_from_fov(30.0, S)
    R = random_rotations(2, generator=torch.Generator().manual_seed(2)).to(device)
    t = torch.tensor([0.0, 0.0, 350.0], device=device).repeat(2, 1)
    hard = MeshRenderer(part).to(device)(R, t, K, S)
    soft_renderer = MeshRenderer(part, RenderSettings(shader="soft-depth", faces_per_pixel=10)).to(device)
    p6 = matrix_to_rotation_6d(R).clone().requires_grad_(True)
    soft = soft_renderer(rotation_6d_to_matrix(p6), t, K, S)
    assert soft.mask.min() >= 0 and soft.mask.max() <= 1
    interior = torch.nn.functional.max_pool2d(1 - hard.mask[:, None], 3, 1, 1)[:, 0] == 0
    error = (soft.depth[interior] - hard.depth[interior]).abs()
    assert error.median() < 0.05 and error.quantile(0.95) < 1.0  # mm; blends at depth steps differ
    soft.depth.sum().backward()
    assert torch.isfinite(p6.grad).all() and p6.grad.abs().sum() > 0


def test_phong_rgb_is_lit_from_the_light_side(device):
    """A plane facing the camera is bright under a headlight, ambient-only when lit from behind."""
    # wound so the normal points at the camera (-z); pixel (14, 17) is off the quad's diagonal
    # (PyTorch3D leaves pixels whose centre lies exactly on a shared edge uncovered)
    corners = np.array([[-30, -30, 0], [-30, 30, 0], [30, 30, 0], [30, -30, 0]], dtype=np.float64)
    renderer = MeshRenderer(_plane(corners)).to(device)
    R = torch.eye(3, device=device).repeat(2, 1, 1)
    t = torch.tensor([[0.0, 0.0, 200.0]], device=device).repeat(2, 1)
    light = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]], device=device)
    out = renderer.render_rgb(R, t, intrinsics_from_fov(40.0, 32), 32, light_dir=light, specular=0.0)
    assert out.rgb.shape == (2, 3, 32, 32)
    assert out.rgb.min() >= 0 and out.rgb.max() <= 1
    lit, unlit = out.rgb[0, :, 14, 17], out.rgb[1, :, 14, 17]
    assert torch.allclose(unlit, torch.full_like(unlit, 0.75 * 0.35), atol=1e-3)
    assert torch.allclose(lit, torch.full_like(lit, 0.75 * (0.35 + 0.6)), atol=1e-3)
    assert out.rgb[:, :, 0, 0].abs().max() == 0  # background is black


def test_loss_view_places_the_object_at_t(part):
    """The loss camera at T = [0, 0, d]: the nearest surface is at least d - radius away, the
    object is centred in the image."""
    view = LossView(MeshRenderer(part), t=(0.0, 0.0, 400.0), fov_deg=30.0, image_size=64)
    out = view(torch.eye(3)[None])
    visible = out.depth[out.mask > 0]
    assert visible.min() >= 400.0 - part.radius - 1e-3 and visible.max() <= 400.0 + part.radius
    ys, xs = torch.nonzero(out.mask[0], as_tuple=True)
    assert abs(xs.float().mean() - 31.5) < 4 and abs(ys.float().mean() - 31.5) < 4


def test_with_mesh_keeps_the_camera_and_settings(part):
    """``LossView.with_mesh``: another mesh in the same camera; only the gradient path may change."""
    coarse = simplify_mesh(part, 200)
    view = LossView(
        MeshRenderer(coarse, RenderSettings(shader="soft-depth", faces_per_pixel=4)), (1.0, 2.0, 400.0), 30.0, 32
    )
    full = view.with_mesh(part, depth_gradient="pytorch3d")
    assert torch.equal(full.t, view.t) and torch.equal(full.K, view.K) and full.image_size == 32
    assert full.renderer.faces.shape[0] == part.num_faces != view.renderer.faces.shape[0]
    assert full.renderer.settings == RenderSettings(shader="soft-depth", faces_per_pixel=4, depth_gradient="pytorch3d")
    assert view.with_mesh(part).renderer.settings == view.renderer.settings
    R = torch.eye(3)[None]
    with torch.no_grad():
        a = LossView(MeshRenderer(part, full.renderer.settings), (1.0, 2.0, 400.0), 30.0, 32)(R).depth
        assert torch.equal(full(R).depth, a)


def test_time_loss_view_reports_each_pass(part):
    from multipose.infra.timing import median_seconds, timed
    from multipose.tools.loss_timing import time_loss_view

    view = LossView(MeshRenderer(simplify_mesh(part, 200)), (0.0, 0.0, 400.0), 30.0, 16)
    R = torch.eye(3).expand(2, 3, 3).contiguous()
    timing = time_loss_view(view, R, repeats=1)
    assert timing.no_grad_ms > 0 and timing.forward_ms > 0 and timing.backward_ms > 0
    assert timing.forward_backward_ms == timing.forward_ms + timing.backward_ms
    out, seconds = timed(lambda: 41 + 1, "cpu")
    assert out == 42 and seconds >= 0
    calls = []
    assert median_seconds(lambda: calls.append(1), "cpu", repeats=3) >= 0 and len(calls) == 4  # 1 warm-up


def test_bad_shapes_are_rejected(part):
    renderer = MeshRenderer(part)
    with pytest.raises(ValueError, match="R must be"):
        renderer(torch.eye(3), torch.zeros(1, 3), torch.eye(3), 8)
    with pytest.raises(ValueError, match="t must be"):
        renderer(torch.eye(3)[None], torch.zeros(3), torch.eye(3), 8)
    with pytest.raises(ValueError, match="unknown shader"):
        RenderSettings(shader="hard-phong")


@pytest.mark.parametrize("gradient", ["torch", "pytorch3d"])
def test_a_renderer_of_several_objects_draws_each_samples_own_object_with_either_rasterizer(gradient):
    """Joined meshes with one object per sample: PyTorch3D's rasterizer (other objects' faces collapsed) and
    ours (other objects' faces skipped) both give each object's own depth, and its gradient path too."""
    part = simplify_mesh(load_mesh(REPO_ROOT / "data/cad-files/tless_like_2fold.ply"), 200)
    other = simplify_mesh(load_mesh(REPO_ROOT / "data/cad-files/tless_like_revolution.ply"), 200)
    settings = RenderSettings(depth_gradient=gradient, rasterizer="pytorch3d" if gradient == "pytorch3d" else "torch")
    both = MeshRenderer([part, other], settings)
    R = random_rotations(4, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    t = torch.tensor([[0.0, 0.0, 500.0]]).expand(4, 3)
    K = intrinsics_from_fov(15.0, 24)
    objects = torch.tensor([1, 0, 0, 1])
    mixed = both(R, t, K, 24, objects).depth
    for b, n in enumerate(objects.tolist()):
        alone = MeshRenderer([part, other][n], settings)(R[b:b + 1], t[b:b + 1], K, 24).depth
        torch.testing.assert_close(mixed[b:b + 1], alone, atol=1e-3, rtol=1e-4)
    mixed.sum().backward()
    assert R.grad is not None and torch.isfinite(R.grad).all() and R.grad.abs().sum() > 0
