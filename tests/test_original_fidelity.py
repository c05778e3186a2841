"""Fidelity to the original repository where a reproduction depends on it: its loss camera (15 degree
field of view at ``[Rendering] T``, training renders at T's z, vertices normalised its way) and the
physical poses of its checkpoints' 6D outputs. Ground truth is computed independently: OpenCV's
``cv2.projectPoints`` of the model's triangles, and PyTorch3D's own camera used the original's way."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import trimesh
from pytorch3d.renderer import FoVPerspectiveCameras, MeshRasterizer, RasterizationSettings
from pytorch3d.structures import Meshes
from support.original import original_state_dict, ortho6d_columns

from multipose.config import load_config, render_distance
from multipose.core.geometry import random_rotations
from multipose.experiment.factories import loss_view_from_config
from multipose.models.head_checkpoint import load_head_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = REPO_ROOT / "tests" / "data"
PART = REPO_ROOT / "data" / "cad-files" / "tless_like_2fold.ply"
FLIP = np.diag([-1.0, -1.0, 1.0])


def _vertices(path: Path, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Model vertices (mm) and faces read with trimesh; normalised the original generator's way
    (centre on the vertex mean, largest absolute coordinate 100 mm) when asked."""
    mesh = trimesh.load(path, process=False, force="mesh")
    v = np.asarray(mesh.vertices, dtype=np.float64)
    if normalize:
        v = v - v.mean(axis=0)
        v = v * (100.0 / np.abs(v).max())
    return v, np.asarray(mesh.faces)


def _cv2_silhouette(v: np.ndarray, faces: np.ndarray, R: np.ndarray, t, fov_deg: float, size: int) -> np.ndarray:
    """``(size, size)`` bool: the model's triangles projected with cv2.projectPoints (pinhole camera of
    vertical field of view ``fov_deg``, principal point at the image centre) and filled with
    sub-pixel precision."""
    f = 0.5 * size / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1]])
    uv, _ = cv2.projectPoints(v, cv2.Rodrigues(R)[0], np.asarray(t, dtype=np.float64), K, None)
    shift = 4
    tris = np.round(uv.reshape(-1, 2)[faces] * (1 << shift)).astype(np.int32)
    image = np.zeros((size, size), np.uint8)
    cv2.fillPoly(image, list(tris), 1, lineType=cv2.LINE_8, shift=shift)
    return image.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(params=["part", "obj_10"])
def model(request) -> Path:
    if request.param == "part":
        return PART
    return request.getfixturevalue("tless_obj10")


@pytest.mark.parametrize("template, normalize, z", [
    ("original_experiment_template.cfg", False, 375.0),  # early: T = [0, 0, 375]
    ("original_experiment_template_final.cfg", True, 1000.0),  # final: T = [[0, 0, 1000]], NORMALIZE_VERTICES
])
def test_original_templates_see_the_object_with_the_originals_camera(model, template, normalize, z, tmp_path):
    cfg = load_config(TEMPLATES / template, [
        f"Dataset.MODEL_PATH_DATA={model}", f"Dataset.MODEL_PATH_LOSS={model}",
        f"Dataset.CACHE_DIR={tmp_path}", "Rendering.LOSS_MESH_FACES=0",
    ])
    assert (cfg.Rendering.FOV, cfg.Rendering.T, cfg.Rendering.NORMALIZE_VERTICES) == (15.0, (0.0, 0.0, z), normalize)
    assert render_distance(cfg) == z  # the training renders, too, are at T's z
    view = loss_view_from_config(cfg, torch.device("cpu"))
    R = random_rotations(3, generator=torch.Generator().manual_seed(2))
    ours = (view(R).depth > 0).numpy()
    v, faces = _vertices(model, normalize)
    S = cfg.Rendering.IMAGE_SIZE
    for i in range(3):
        expected = _cv2_silhouette(v, faces, R[i].double().numpy(), (0, 0, z), 15.0, S)
        assert expected.mean() > 0.02  # the object is really seen (T-LESS at 375 mm: ~10 % of a 64 px view)
        assert ours[i].mean() == pytest.approx(expected.mean(), rel=0.08), (i, ours[i].mean(), expected.mean())
        assert _iou(ours[i], expected) > 0.9


def test_an_original_checkpoint_decodes_to_the_pose_the_original_rendered(tmp_path):
    """A checkpoint of the original's train.py whose head outputs one known 6D vector: the decoded pose
    renders (our renderer) the silhouette that cv2.projectPoints gives for it, and the silhouette that
    PyTorch3D gives for the original's use of that vector as a camera rotation."""
    K, code, size, t, fov = 2, 128, 64, (0.0, 0.0, 375.0), 15.0
    sixd = np.array([[0.3, -0.8, 0.4, 0.9, 0.2, -0.1], [-0.5, 0.1, 0.7, 0.2, 0.9, 0.4]])
    state = original_state_dict(K, code)
    state["l3.weight"] = torch.zeros_like(state["l3.weight"])
    state["l3.bias"] = torch.tensor([2.0, 0.0, *sixd.ravel()], dtype=torch.float32)
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "lr_reducer": None, "epoch": 12},
               tmp_path / "model-epoch12.pt")
    head, stored = load_head_checkpoint(tmp_path / "model-epoch12.pt", num_hypotheses=K)
    assert head.config.convention == "original" and stored["epoch"] == 12
    with torch.no_grad():
        out = head(torch.nn.functional.normalize(torch.randn(4, code), dim=1))
    assert (out.confidence[:, 0] > out.confidence[:, 1]).all()

    cfg = load_config(TEMPLATES / "original_experiment_template.cfg", [
        f"Dataset.MODEL_PATH_DATA={PART}", f"Dataset.MODEL_PATH_LOSS={PART}", f"Dataset.CACHE_DIR={tmp_path}",
        "Rendering.LOSS_MESH_FACES=0", "Rendering.VIEWS=2"])
    view = loss_view_from_config(cfg, torch.device("cpu"))
    v, faces = _vertices(PART, normalize=False)
    rasterizer = MeshRasterizer(raster_settings=RasterizationSettings(image_size=size, faces_per_pixel=1))
    mesh = Meshes([torch.tensor(v, dtype=torch.float32)], [torch.tensor(faces)])
    for k in range(K):
        R_orig = ortho6d_columns(sixd[k])  # what the original handed to PyTorch3D as the camera's R
        R_cv = FLIP @ R_orig.T
        np.testing.assert_allclose(out.R[0, k].double().numpy(), R_cv, atol=1e-5)
        camera = FoVPerspectiveCameras(fov=fov, R=torch.tensor(R_orig[None], dtype=torch.float32),
                                       T=torch.tensor([t], dtype=torch.float32))
        theirs = (rasterizer(mesh, cameras=camera).pix_to_face[0, ..., 0] >= 0).numpy()
        projected = _cv2_silhouette(v, faces, R_cv, t, fov, size)
        ours = (view(out.R[:1, k]).depth[0] > 0).numpy()
        assert projected.mean() > 0.02
        assert _iou(ours, projected) > 0.9 and _iou(theirs, projected) > 0.9
        # decoding the vector our way (no roll) is the pose turned 180 degrees about the optical axis
        unrolled = _cv2_silhouette(v, faces, FLIP @ R_cv, t, fov, size)
        assert _iou(unrolled, projected) < 0.8
