"""Helpers shared by the tests of ``multipose.data`` (tiny meshes, configs, a reference rasteriser)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from multipose.config import Config, load_config_text
from multipose.mesh import Mesh, load_mesh, simplify_mesh

REPO_ROOT = Path(__file__).resolve().parents[1]
PART = REPO_ROOT / "data" / "cad-files" / "tless_like_2fold.ply"


def tiny_mesh(faces: int = 300) -> Mesh:
    """The committed procedural part decimated to about ``faces`` faces (fast CPU renders)."""
    return simplify_mesh(load_mesh(PART), faces)


def write_mesh(mesh: Mesh, path: Path) -> Path:
    mesh.to_trimesh().export(path)
    return path


def small_config(tmp_path: Path, mesh_path: Path, *overrides: str) -> Config:
    """A config for tests: the given mesh, 32 px crops, few views, everything under ``tmp_path``."""
    base = [
        f"Dataset.MODEL_PATH_DATA={mesh_path}",
        f"Dataset.CACHE_DIR={tmp_path / 'cache'}",
        "Dataset.CROP_SIZE=32",
        "Dataset.NOOF_TRAINING_IMGS=12",
        "Dataset.NOOF_VALID_IMGS=6",
        f"Training.OUTPUT_PATH={tmp_path / 'run'}",
        "Training.BATCH_SIZE=4",
        "Training.NUM_SAMPLES=10",
        "Training.DEVICE=cpu",
    ]
    return load_config_text("", "test.cfg", [*base, *overrides])


def rasterize_reference(vertices: np.ndarray, faces: np.ndarray, R: np.ndarray, t: np.ndarray,
                        K: np.ndarray, size: int) -> np.ndarray:
    """Independent silhouette: project the vertices with ``cv2.projectPoints`` and mark every pixel
    whose centre (integer coordinates) lies in a projected triangle. Returns ``(size, size)`` bool."""
    rvec, _ = cv2.Rodrigues(np.asarray(R, dtype=np.float64))
    uv, _ = cv2.projectPoints(np.asarray(vertices, np.float64), rvec, np.asarray(t, np.float64),
                              np.asarray(K, np.float64), None)
    tri = uv[:, 0][faces]  # (F, 3, 2)
    ys, xs = np.mgrid[0:size, 0:size]
    centres = np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float64)[None]  # (1, P, 2)
    out = np.zeros(size * size, dtype=bool)
    for start in range(0, len(tri), 256):
        a, b, c = (tri[start : start + 256, i][:, None] for i in range(3))

        def edge(p, q):
            return (q[..., 0] - p[..., 0]) * (centres[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (
                centres[..., 0] - p[..., 0])

        e0, e1, e2 = edge(b, c), edge(c, a), edge(a, b)
        inside = ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
        out |= inside.any(axis=0)
    return out.reshape(size, size)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))
