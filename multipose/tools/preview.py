"""Check an experiment's object and loss camera before training: what the loss renderer sees.

For a config this loads the data mesh and the decimated loss mesh, places them at ``T`` in the loss
camera, and reports

- the depth error the decimation introduces (mean and 95th percentile of ``|depth_full -
  depth_loss|`` over pixels covered by both, silhouette IoU) over random rotations;
- the loss renderer's cost per depth map (forward, forward + backward) on the configured device;
- a figure ``preview.png``: for a few rotations, the Phong-shaded data mesh, its depth, the loss
  mesh's depth and their absolute difference.

Outputs go to ``<OUTPUT_PATH>/preview/`` (``preview.png``, ``preview.json``, ``config.cfg``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from multipose.config import Config
from multipose.core.geometry import random_rotations
from multipose.core.mesh import Mesh
from multipose.core.render import LossView, Rendering
from multipose.experiment.factories import load_data_mesh, loss_view_from_config
from multipose.experiment.run_folder import write_resolved_config
from multipose.infra.atomic import atomic_write_text
from multipose.infra.visualize import image_grid, save_figure
from multipose.tools.loss_timing import time_loss_view
from multipose.tools.mesh_difference import MeshDifference, mesh_difference

logger = logging.getLogger(__name__)

__all__ = ["PreviewReport", "run_preview"]


@dataclass(frozen=True)
class PreviewReport:
    """What :func:`run_preview` measured (also written to ``preview.json``)."""

    data_mesh: str
    data_faces: int
    loss_faces: int
    radius_mm: float
    T: tuple[float, float, float]
    fov_deg: float
    image_size: int
    device: str
    depth_gradient: str
    difference: MeshDifference
    forward_ms_per_image: float
    forward_backward_ms_per_image: float
    covered_fraction: float


def run_preview(cfg: Config, device: torch.device, num_views: int = 6, num_error_views: int = 64) -> PreviewReport:
    """Render the configured object with the loss camera, write the preview files, return the report."""
    loss_view = loss_view_from_config(cfg, device)
    data_mesh = load_data_mesh(cfg)
    full_view = loss_view.with_mesh(data_mesh)
    generator = torch.Generator().manual_seed(cfg.Training.RANDOM_SEED)
    R_err = random_rotations(num_error_views, generator=generator).to(device)
    difference = mesh_difference(full_view, loss_view, R_err)
    timing = time_loss_view(loss_view, R_err[:16], repeats=1)

    light = torch.randn(num_views, 3, generator=generator).to(device)
    fig, loss = _comparison(full_view, loss_view, data_mesh, R_err[:num_views], light)
    out_dir = Path(cfg.Training.OUTPUT_PATH) / "preview"
    tx, ty, tz = loss_view.t.tolist()  # the loss view's translation, a 3-vector
    report = PreviewReport(
        data_mesh=str(cfg.Dataset.MODEL_PATH_DATA),
        data_faces=data_mesh.num_faces,
        loss_faces=int(loss_view.renderer.faces.shape[0]),
        radius_mm=data_mesh.radius,
        T=(float(tx), float(ty), float(tz)),
        fov_deg=loss_view.fov_deg,
        image_size=loss_view.image_size,
        device=str(device),
        depth_gradient=loss_view.renderer.settings.resolved_gradient(device),
        difference=difference,
        forward_ms_per_image=timing.no_grad_ms,
        forward_backward_ms_per_image=timing.forward_backward_ms,
        covered_fraction=float(loss.mask.mean()),
    )
    save_figure(fig, out_dir / "preview.png")
    atomic_write_text(out_dir / "preview.json", json.dumps(asdict(report), indent=2) + "\n")
    write_resolved_config(cfg, out_dir)
    _log(report, difference)
    logger.info("wrote %s", out_dir)
    return report


def _comparison(full_view: LossView, loss_view: LossView, data_mesh: Mesh, R: torch.Tensor, light: torch.Tensor
                ) -> tuple[Figure, Rendering]:
    """The figure (per rotation of ``R (N, 3, 3)``: the data mesh shaded with ``light (N, 3)``, its depth, the
    loss mesh's depth and their difference) and the loss view's rendering."""
    num_views = R.shape[0]
    light[:, 2] = -light[:, 2].abs() - 0.5  # from the camera's side
    with torch.no_grad():
        shaded = full_view.renderer.render_rgb(
            R, full_view.t.expand(num_views, 3), full_view.K, full_view.image_size, light_dir=light
        )
        loss = loss_view(R)
    assert shaded.rgb is not None  # render_rgb always shades
    rows = []
    for i in range(num_views):
        d_full, d_loss = shaded.depth[i].cpu().numpy(), loss.depth[i].cpu().numpy()
        diff = np.where((d_full > 0) | (d_loss > 0), np.abs(d_full - d_loss) + 1e-6, 0.0)
        rows.append([shaded.rgb[i].permute(1, 2, 0).cpu().numpy(), d_full, d_loss, diff])
    fig = image_grid(
        rows,
        column_titles=[
            f"data mesh\n{data_mesh.num_faces} faces",
            "depth (mm)\ndata mesh",
            f"depth (mm), loss mesh\n{loss_view.renderer.faces.shape[0]} faces",
            "|difference|\n(mm)",
        ],
        cmaps=[None, "viridis", "viridis", "magma"],
    )
    return fig, loss


def _log(report: PreviewReport, difference: MeshDifference) -> None:
    """The preview's findings, one log line each; a warning when the object is too small in the loss view."""
    logger.info(
        "%s: %d faces (loss mesh %d), radius %.1f mm, T = %s mm, %s",
        report.data_mesh, report.data_faces, report.loss_faces, report.radius_mm,
        [round(x, 1) for x in report.T], report.device,
    )
    logger.info(
        "decimation error over %d views: mean %.3f mm, p95 %.3f mm, silhouette IoU %.4f",
        difference.num_views, difference.mean_abs_depth_mm, difference.p95_abs_depth_mm, difference.silhouette_iou,
    )
    logger.info(
        "loss renderer %dx%d (%s gradient): %.1f ms/image forward, %.1f ms/image forward+backward",
        report.image_size, report.image_size, report.depth_gradient, report.forward_ms_per_image,
        report.forward_backward_ms_per_image,
    )
    if report.covered_fraction < 0.02:
        logger.warning(
            "the object covers only %.1f%% of the loss view: lower [Rendering] T (or use T: auto)",
            100 * report.covered_fraction,
        )
