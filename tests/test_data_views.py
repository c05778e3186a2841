"""Crop geometry: the rendered crop is the AAE window of the base camera, through the crop's K."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.data import iou, rasterize_reference, tiny_mesh

from multipose.core.geometry import random_rotations
from multipose.core.mesh import load_mesh
from multipose.data.views import (
    ViewRenderer,
    ViewSettings,
    crop_intrinsics,
    crop_windows,
    random_light_directions,
    tight_boxes,
)


@pytest.fixture(scope="module")
def mesh():
    return tiny_mesh(300)


def test_rendered_masks_match_a_cv2_rasterisation_through_the_crop_intrinsics(mesh, device):
    settings = ViewSettings(size=48)
    views = ViewRenderer(mesh, settings, device).render(
        random_rotations(4, generator=torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1))
    v, f = mesh.vertices.numpy(), mesh.faces.numpy()
    for i in range(4):
        ref = rasterize_reference(v, f, views.R[i].cpu().numpy(), views.t[i].cpu().numpy(),
                                  views.K[i].cpu().numpy(), 48)
        assert iou(views.mask[i].cpu().numpy(), ref) >= 0.97
    assert torch.equal(views.t.cpu(), torch.tensor([[0.0, 0.0, 700.0]]).expand(4, 3))
    assert views.rgb.dtype == torch.uint8 and views.rgb.shape == (4, 3, 48, 48)
    assert (views.rgb.sum(1)[~views.mask] == 0).all() and (views.depth[~views.mask] == 0).all()
    on = views.depth[views.mask]
    assert (on > 700 - mesh.radius - 1).all() and (on < 700 + mesh.radius + 1).all()


def test_without_offset_the_whole_object_is_inside_the_crop_with_the_pad_margin(mesh):
    S = 40
    views = ViewRenderer(mesh, ViewSettings(size=S, max_rel_offset=0.0)).render(
        random_rotations(6, generator=torch.Generator().manual_seed(2)), torch.Generator().manual_seed(3))
    m = views.mask
    assert not (m[:, 0].any() or m[:, -1].any() or m[:, :, 0].any() or m[:, :, -1].any())
    # the larger side of the object spans S / PAD_FACTOR pixels, centred
    rows, cols = m.any(2), m.any(1)
    extent = torch.stack([rows.sum(1), cols.sum(1)], 1).amax(1).float()
    assert torch.allclose(extent, torch.full_like(extent, S / 1.2), atol=1.5)


def test_offsets_move_the_window_by_the_box_size():
    boxes = torch.tensor([[100.0, 200.0, 140.0, 220.0]])  # w = 40, h = 20
    windows = crop_windows(boxes, torch.tensor([[0.25, -0.5]]), pad_factor=1.5)
    assert torch.allclose(windows, torch.tensor([[120.0 + 10.0, 210.0 - 10.0, 60.0]]))


def test_crop_intrinsics_map_the_window_edges_to_the_crop_edges():
    K = torch.tensor([[1000.0, 0.0, 320.0], [0.0, 1000.0, 240.0], [0.0, 0.0, 1.0]])
    window = torch.tensor([[300.0, 250.0, 64.0]])  # [268, 332] x [218, 282]
    Kc = crop_intrinsics(K, window, size=32)[0]
    # a point at base pixel u maps to (u - u0) * S / side - 0.5
    base = torch.tensor([[268.0, 218.0, 1.0], [332.0, 282.0, 1.0], [300.0, 250.0, 1.0]]).T
    crop = Kc @ torch.linalg.inv(K) @ base
    assert torch.allclose(crop[:2].T, torch.tensor([[-0.5, -0.5], [31.5, 31.5], [15.5, 15.5]]), atol=1e-4)


@pytest.mark.slow
def test_tight_boxes_bound_the_projected_silhouette(mesh):
    R = random_rotations(3, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([[0.0, 0.0, 700.0]]).expand(3, 3)
    K = ViewSettings().K_tensor()
    boxes = tight_boxes(mesh.vertices, R, t, K)
    v, f = mesh.vertices.numpy(), mesh.faces.numpy()
    for i in range(3):  # a 1:1 rasterisation around the box: the silhouette fills it (up to a
        box = boxes[i].numpy()  # vertex tip that covers no pixel centre) and never leaves it
        x0, y0 = np.floor(box[:2]) - 3
        Ki = K.clone()
        Ki[:2, 2] -= torch.tensor([x0, y0], dtype=torch.float32)
        size = int(np.ceil((box[2:] - box[:2]).max())) + 7
        ref = rasterize_reference(v, f, R[i].numpy(), t[i].numpy(), Ki.numpy(), size)
        ys, xs = np.nonzero(ref)
        low = np.array([xs.min() + x0, ys.min() + y0])
        high = np.array([xs.max() + x0, ys.max() + y0])
        assert np.all(low >= box[:2]) and np.all(low <= box[:2] + 2.0)
        assert np.all(high <= box[2:]) and np.all(high >= box[2:] - 2.0)


def test_views_are_reproducible_and_lights_face_the_camera(mesh):
    vr = ViewRenderer(mesh, ViewSettings(size=24))
    R = random_rotations(3, generator=torch.Generator().manual_seed(5))
    a = vr.render(R, torch.Generator().manual_seed(6))
    b = vr.render(R, torch.Generator().manual_seed(6))
    c = vr.render(R, torch.Generator().manual_seed(7))
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.K, b.K)
    assert not torch.equal(a.K, c.K)  # other offsets
    light = random_light_directions(100, torch.Generator().manual_seed(0))
    assert torch.allclose(light.norm(dim=1), torch.ones(100)) and (light[:, 2] < -0.4).all()


@pytest.mark.slow
def test_real_tless_model_crops_match_the_cv2_rasterisation(tless_obj10):
    """T-LESS object 10 (11,918 faces) with the AAE's camera and distance, 48 px crops."""
    mesh = load_mesh(tless_obj10)
    views = ViewRenderer(mesh, ViewSettings(size=48)).render(
        random_rotations(2, generator=torch.Generator().manual_seed(8)), torch.Generator().manual_seed(9))
    v, f = mesh.vertices.numpy(), mesh.faces.numpy()
    for i in range(2):
        ref = rasterize_reference(v, f, views.R[i].numpy(), views.t[i].numpy(), views.K[i].numpy(), 48)
        assert iou(views.mask[i].numpy(), ref) >= 0.97
        assert 0.15 < views.mask[i].float().mean() < 0.7  # the object fills the crop, AAE-style
