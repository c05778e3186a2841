"""Loss landscapes: correct minima for symmetric objects, the files, and the figures."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from multipose.config import load_config
from multipose.core.geometry import deserno_sphere_points
from multipose.infra.errors import LandscapeError
from multipose.tools.landscape import basins, load_landscape, run_landscape

REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_SAMPLES = 300


def _reference_with_symmetric_partner() -> tuple[int, int]:
    """A mid-latitude point whose latitude band also holds the point half a turn further in phi."""
    spherical, _ = deserno_sphere_points(NUM_SAMPLES)
    theta, phi = spherical[:, 0], spherical[:, 1]
    for ref in np.argsort(np.abs(theta - np.pi / 3)):
        band = np.nonzero(np.isclose(theta, theta[ref]))[0]
        partner = band[np.isclose((phi[band] - phi[ref]) % (2 * np.pi), np.pi)]
        if len(partner):
            return int(ref), int(partner[0])
    raise AssertionError("no band with an even number of points")


def _landscape(tmp_path: Path, model: str, reference: int, save_images: bool = False) -> Path:
    cfg = load_config(
        REPO_ROOT / "experiment_template.cfg",
        [
            f"Dataset.MODEL_PATH_DATA=./data/cad-files/{model}",
            f"Dataset.MODEL_PATH_LOSS=./data/cad-files/{model}",
            f"Dataset.CACHE_DIR={tmp_path / 'cache'}",
            f"Training.OUTPUT_PATH={tmp_path / model}",
            f"Training.SAVE_IMAGES={save_images}",
            "Training.DEVICE=cpu",
            "Rendering.IMAGE_SIZE=32",
            f"Sampling.NUM_SAMPLES={NUM_SAMPLES}",
            f"Sampling.REFERENCE_NUM={reference}",
        ],
    )
    return run_landscape(cfg, torch.device("cpu"), progress=False)


@pytest.fixture(scope="module")
def twofold_dir(tmp_path_factory) -> tuple[Path, int, int]:
    ref, partner = _reference_with_symmetric_partner()
    return _landscape(tmp_path_factory.mktemp("land"), "tless_like_2fold.ply", ref, save_images=True), ref, partner


@pytest.mark.outcome
def test_reference_has_zero_loss_and_is_a_global_minimum(twofold_dir):
    out, ref, _ = twofold_dir
    losses = np.load(out / "losses.npy")
    assert losses.shape == (len(deserno_sphere_points(NUM_SAMPLES)[0]),)
    assert losses[ref] == 0.0 and losses.min() == 0.0
    meta = json.loads((out / "landscape.json").read_text())
    assert meta["reference_index"] == ref and meta["summary"]["reference_loss"] == 0.0
    assert "[Sampling]" in meta["config"]


@pytest.mark.outcome
def test_two_fold_object_has_a_second_global_minimum_at_the_symmetric_pose(twofold_dir):
    out, ref, partner = twofold_dir
    data = load_landscape(out)
    losses = data.point_losses
    assert losses[partner] < 0.005
    assert np.sort(losses)[2] > 0.02  # only the reference and its symmetric partner are near zero
    labels, minima = basins(data.cartesian, losses)
    assert ref in minima and partner in minima


@pytest.mark.outcome
def test_revolution_object_has_zero_loss_on_the_reference_circle(tmp_path):
    ref, _ = _reference_with_symmetric_partner()
    data = load_landscape(_landscape(tmp_path, "tless_like_revolution.ply", ref))
    theta = data.spherical[:, 0]
    circle = np.isclose(theta, theta[ref])
    assert circle.sum() > 10
    assert data.point_losses[circle].max() < 0.01
    assert data.point_losses[~circle].min() > 0.01


def test_files_keep_the_original_format(twofold_dir):
    out, _, _ = twofold_dir
    points = np.load(out / "points.npy", allow_pickle=True)
    first = points[0]
    assert set(first) == {"spherical", "cartesian"} and len(first["spherical"]) == 2 and len(first["cartesian"]) == 3
    assert np.load(out / "rotations.npy").shape == (len(points), 1, 3, 3)
    depths = np.load(out / "depths.npy")
    assert depths.shape == (len(points), 1, 32, 32) and depths.dtype == np.float16 and depths.max() > 0


def test_basins_follow_steepest_descent_to_each_minimum():
    _, points = deserno_sphere_points(400)
    a, b = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    losses = np.minimum(np.arccos(np.clip(points @ a, -1, 1)), 0.5 + np.arccos(np.clip(points @ b, -1, 1)))
    labels, minima = basins(points, losses)
    assert len(minima) == 2
    nearest = [int(np.argmax(points @ a)), int(np.argmax(points @ b))]
    assert sorted(minima.tolist()) == sorted(nearest)
    margin = np.arccos(np.clip(points @ a, -1, 1)) - (0.5 + np.arccos(np.clip(points @ b, -1, 1)))
    # on a discrete point set the watershed is only resolved to a point spacing: points within half a
    # spacing of it (6 of the 394 here) may descend either way; every other point goes to its own basin
    clear = np.abs(margin) > 0.5 * np.sqrt(4 * np.pi / 400)
    assert clear.sum() > 0.95 * len(points)
    assert (labels == labels[nearest[0]])[clear].tolist() == (margin < 0)[clear].tolist()


@pytest.mark.slow
def test_show_loss_landscape_writes_three_pngs_headless(twofold_dir, python, tmp_path):
    out, ref, _ = twofold_dir
    result = subprocess.run(
        [python, "show_loss_landscape.py", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    for name in ("flat_landscape.png", "landscape.png", "regions.png"):
        with Image.open(out / name) as image:
            image.verify()
    assert f"reference {ref} (loss 0.0000)" in result.stdout
    rows = json.loads((out / "minima.json").read_text())
    assert rows[0]["index"] == ref and rows[0]["angle_to_reference_deg"] == pytest.approx(0.0, abs=1e-3)


def test_original_files_without_metadata_load_with_a_reference(twofold_dir, tmp_path):
    out, ref, _ = twofold_dir
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name in ("points.npy", "losses.npy"):
        (legacy / name).write_bytes((out / name).read_bytes())
    data = load_landscape(legacy, reference=ref)
    np.testing.assert_allclose(data.rotations, np.load(out / "rotations.npy"), atol=1e-6)
    assert data.reference == ref


@pytest.mark.slow
def test_missing_or_mismatched_files_are_clear_errors(twofold_dir, tmp_path, python):
    out, _, _ = twofold_dir
    with pytest.raises(LandscapeError, match="points.npy: missing"):
        load_landscape(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "points.npy").write_bytes((out / "points.npy").read_bytes())
    np.save(bad / "losses.npy", np.zeros(7))
    with pytest.raises(LandscapeError, match="same run"):
        load_landscape(bad)
    result = subprocess.run([python, "show_loss_landscape.py", str(bad)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert not (bad / "regions.png").exists()
