"""Loss landscapes: the multi-pose loss of poses all over the sphere against one reference pose.

It shows why the loss works on symmetric objects: one basin per pose that renders like the
reference. Poses are the original's: ``[Sampling] NUM_SAMPLES`` equal-area points on the sphere
(:func:`multipose.core.geometry.deserno_sphere_points`), each turned into a rotation with
``Rotation.from_euler('yz', [theta, phi])``, optionally swept in-plane (``INPLANE_STEPS`` angles
``360 * i / steps`` about the camera's optical axis, applied as ``Rz(a) @ R``). The reference is point
``REFERENCE_NUM`` (modulo the count) with in-plane angle 0. Every pose's loss is computed by the
training loss (:class:`multipose.core.losses.MultiPoseLoss`, one hypothesis with confidence 1, the
config's loss mesh, parameters and viewpoints), batched.

Files in the output folder (``[Training] OUTPUT_PATH``):

- ``points.npy``: object array of ``{"spherical": [theta, phi], "cartesian": [x, y, z]}`` (the
  original's format; ``np.load(..., allow_pickle=True)``);
- ``losses.npy``: ``(N,)`` float, or ``(N, INPLANE_STEPS)`` with an in-plane sweep;
- ``rotations.npy``: ``(N, INPLANE_STEPS, 3, 3)`` float32, the poses (OpenCV model-to-camera);
- ``landscape.json``: the resolved config, reference index, in-plane angles, timing and summary;
- ``depths.npy`` with ``SAVE_IMAGES``: ``(N, INPLANE_STEPS, S, S)`` float16 rendered depth (mm).

:func:`basins` groups points into basins of attraction (each point follows its steepest-descent
neighbour on the sphere's Delaunay triangulation, the dual of its spherical Voronoi diagram, until a
local minimum) and the ``plot_*`` functions draw the figures of ``show_loss_landscape.py``.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PolyCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection
from scipy.spatial import ConvexHull, SphericalVoronoi, Voronoi

from multipose.config import Config
from multipose.core.geometry import (
    deserno_sphere_points,
    geodesic_angle_deg,
    rotation_about_axis,
    sphere_point_rotations,
)
from multipose.core.losses import MultiPoseLoss
from multipose.experiment.factories import loss_from_config
from multipose.infra.atomic import atomic_write_bytes, atomic_write_text
from multipose.infra.distributed import Dist
from multipose.infra.errors import LandscapeError
from multipose.infra.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = [
    "LandscapeData",
    "basins",
    "compute_losses",
    "landscape_rotations",
    "load_landscape",
    "minima_table",
    "plot_flat",
    "plot_regions",
    "plot_sphere",
    "rotations_for_points",
    "run_landscape",
]


def landscape_rotations(
    num_samples: int, inplane_steps: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """The landscape's poses.

    Returns ``spherical (N, 2)`` [theta, phi], ``cartesian (N, 3)``, in-plane angles ``(I,)`` in
    degrees and rotations ``(N, I, 3, 3)`` with ``R[n, i] = Rz(inplane[i]) @ from_euler('yz', sph[n])``.
    """
    spherical, cartesian = deserno_sphere_points(num_samples)
    inplane, R = rotations_for_points(spherical, inplane_steps)
    return spherical, cartesian, inplane, R


def rotations_for_points(spherical: np.ndarray, inplane_steps: int) -> tuple[np.ndarray, torch.Tensor]:
    """In-plane angles ``(I,)`` (degrees) and poses ``(N, I, 3, 3)`` of sphere points ``(N, 2)``."""
    inplane = 360.0 * np.arange(inplane_steps) / inplane_steps
    R_point = sphere_point_rotations(spherical)  # (N, 3, 3)
    roll = rotation_about_axis([0.0, 0.0, 1.0], torch.from_numpy(inplane))  # (I, 3, 3)
    return inplane, roll[None] @ R_point[:, None]


@torch.no_grad()
def compute_losses(
    loss: MultiPoseLoss,
    R: torch.Tensor,
    R_ref: torch.Tensor,
    batch_size: int,
    keep_depth: bool = False,
    progress: bool = True,
    dist: Dist | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loss of every pose ``R (M, 3, 3)`` as the single hypothesis (confidence 1) against the
    reference ``R_ref (3, 3)``: ``-> losses (M,)`` on the CPU, and with ``keep_depth`` the rendered
    depth ``(M, S, S)`` of the first viewpoint (float16, CPU). ``dist``: each rank computes its share of
    the batches (:meth:`~multipose.infra.distributed.Dist.batches`) and every rank gets all the results."""
    dist = dist or Dist()
    device = loss.viewpoints.device
    R_ref = R_ref.to(device)
    depth_ref = loss.render_gt(R_ref[None])  # (1, V, S, S), rendered once
    losses, depths = [], []
    for rows in progress_bar(dist.batches(R.shape[0], batch_size), desc="landscape", unit="batch",
                             disable=not progress):
        Rb = R[rows].to(device)
        b = Rb.shape[0]
        terms = loss(R_ref.expand(b, 3, 3), Rb[:, None], Rb.new_ones(b, 1), depth_gt=depth_ref.expand(b, -1, -1, -1))
        losses.append(terms.per_sample.cpu())
        if keep_depth:
            depths.append(terms.rendered[:, 0, 0].to(torch.float16).cpu())
    return torch.cat(dist.all_gather_list(losses)), (torch.cat(dist.all_gather_list(depths)) if keep_depth else None)


def run_landscape(cfg: Config, device: torch.device, progress: bool = True, dist: Dist | None = None) -> Path:
    """Compute the landscape of a config and write its files to ``OUTPUT_PATH``; returns that folder.
    ``dist``: the ranks of a distributed run share the poses out; rank 0 writes the files."""
    dist = dist or Dist()
    s = cfg.Sampling
    loss = loss_from_config(cfg, device)
    spherical, cartesian, inplane, R = landscape_rotations(s.NUM_SAMPLES, s.INPLANE_STEPS)
    N, I = R.shape[:2]
    reference = s.REFERENCE_NUM % N
    start = time.perf_counter()
    losses_t, depths = compute_losses(
        loss, R.reshape(-1, 3, 3), R[reference, 0], s.BATCH_SIZE, keep_depth=cfg.Training.SAVE_IMAGES,
        progress=progress and dist.is_main, dist=dist,
    )
    seconds = time.perf_counter() - start
    losses = losses_t.reshape(N, I).numpy()
    out = Path(cfg.Training.OUTPUT_PATH)
    if not dist.is_main:
        return out
    points = np.empty(N, dtype=object)
    for n in range(N):
        points[n] = {"spherical": spherical[n].tolist(), "cartesian": cartesian[n].tolist()}
    labels, minima = basins(cartesian, losses.min(axis=1))
    summary = {
        "reference_loss": float(losses[reference, 0]),
        "min_loss": float(losses.min()),
        "max_loss": float(losses.max()),
        "mean_loss": float(losses.mean()),
        "num_local_minima": int(len(minima)),
        "num_near_zero_points": int((losses.min(axis=1) < 0.01).sum()),
    }
    meta = {
        "reference_index": int(reference),
        "num_points": int(N),
        "inplane_deg": inplane.tolist(),
        "loss": {"depth_max": loss.params.depth_max, "pose_max": loss.params.pose_max, "gamma": loss.params.gamma},
        "device": str(device),
        "processes": dist.world_size,
        "seconds": seconds,
        "poses_per_second": N * I / seconds,
        "summary": summary,
        "config": cfg.to_ini(),
    }
    _save_npy(out / "points.npy", points)
    _save_npy(out / "losses.npy", losses[:, 0] if I == 1 else losses)
    _save_npy(out / "rotations.npy", R.numpy().astype(np.float32))
    if depths is not None:
        _save_npy(out / "depths.npy", depths.reshape(N, I, *depths.shape[1:]).numpy())
    atomic_write_text(out / "landscape.json", json.dumps(meta, indent=2) + "\n")
    logger.info(
        "%d poses in %.1f s (%.0f poses/s on %s, %d process(es)); reference %d; %d local minima; wrote %s",
        N * I, seconds, N * I / seconds, device, dist.world_size, reference, len(minima), out,
    )
    return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=array.dtype == object)
    atomic_write_bytes(path, buf.getvalue())


@dataclass(frozen=True)
class LandscapeData:
    """A landscape read back from disk.

    Attributes:
        spherical: ``(N, 2)`` [theta, phi] radians. cartesian: ``(N, 3)`` unit vectors.
        losses: ``(N, I)`` loss per point and in-plane angle.
        rotations: ``(N, I, 3, 3)`` poses (recomputed from ``spherical`` for the original's files).
        reference: index of the reference point.
    """

    spherical: np.ndarray
    cartesian: np.ndarray
    losses: np.ndarray
    rotations: np.ndarray
    reference: int

    @property
    def point_losses(self) -> np.ndarray:
        """``(N,)`` the best loss over in-plane angles at each point."""
        return self.losses.min(axis=1)


def load_landscape(folder: str | Path, reference: int | None = None) -> LandscapeData:
    """Read ``points.npy``, ``losses.npy`` (and ``rotations.npy``, ``landscape.json`` when present).

    The original's folders have no ``landscape.json``: pass ``reference`` (its REFERENCE_NUM) or
    the point with the lowest loss is taken as the reference. Missing or mismatched files raise
    :class:`LandscapeError`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LandscapeError(f"{folder}: not a folder; pass the OUTPUT_PATH that plot_loss_landscape.py wrote")
    for name in ("points.npy", "losses.npy"):
        if not (folder / name).is_file():
            raise LandscapeError(f"{folder / name}: missing; run plot_loss_landscape.py CFG first (it writes it)")
    try:
        points = np.load(folder / "points.npy", allow_pickle=True)
        losses = np.load(folder / "losses.npy", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise LandscapeError(f"{folder}: cannot read points.npy / losses.npy ({exc}); recompute them") from exc
    try:
        spherical = np.array([p["spherical"] for p in points], dtype=np.float64).reshape(-1, 2)
        cartesian = np.array([p["cartesian"] for p in points], dtype=np.float64).reshape(-1, 3)
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise LandscapeError(
            f"{folder / 'points.npy'}: expected entries with 'spherical' [theta, phi] and 'cartesian' [x, y, z]"
        ) from exc
    N = len(spherical)
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim == 1:
        losses = losses[:, None]
    if losses.ndim != 2 or losses.shape[0] != N or N < 4:
        raise LandscapeError(
            f"{folder}: losses.npy has shape {losses.shape} but points.npy has {N} points; "
            "they must come from the same run (recompute with plot_loss_landscape.py)"
        )
    if not np.isfinite(losses).all():
        raise LandscapeError(f"{folder / 'losses.npy'}: contains NaN or infinite losses")
    if (folder / "rotations.npy").is_file():
        rotations = np.load(folder / "rotations.npy")
        if rotations.shape != (N, losses.shape[1], 3, 3):
            raise LandscapeError(
                f"{folder / 'rotations.npy'}: shape {rotations.shape} does not match losses {losses.shape}"
            )
    else:
        rotations = rotations_for_points(spherical, losses.shape[1])[1].numpy()
    meta_file = folder / "landscape.json"
    if reference is None and meta_file.is_file():
        reference = int(json.loads(meta_file.read_text())["reference_index"])
    if reference is None:
        reference = int(np.argmin(losses[:, 0]))
    return LandscapeData(spherical, cartesian, losses, rotations, int(reference) % N)


def _neighbours(cartesian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(E,)``, ``(E,)`` of the Delaunay triangulation of points on the sphere (both directions)."""
    tri = ConvexHull(cartesian).simplices
    a = np.concatenate([tri[:, 0], tri[:, 1], tri[:, 2]])
    b = np.concatenate([tri[:, 1], tri[:, 2], tri[:, 0]])
    edges = np.unique(np.stack([np.concatenate([a, b]), np.concatenate([b, a])], axis=1), axis=0)
    return edges[:, 0], edges[:, 1]


def basins(cartesian: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Basins of attraction on the sphere: ``(N, 3), (N,) -> labels (N,), minima (M,)``.

    Each point moves to its lowest neighbour when that neighbour is strictly lower (ties broken by
    index); points with no lower neighbour are local minima. Following these moves by pointer
    jumping (no recursion) gives each point's minimum; ``labels[n]`` is the index into ``minima``.
    """
    N = len(losses)
    src, dst = _neighbours(cartesian)
    order = np.lexsort((dst, losses[dst], src))  # per source: lowest neighbour first
    src, dst = src[order], dst[order]
    first = np.unique(src, return_index=True)[1]
    best = np.arange(N)
    best[src[first]] = dst[first]
    lower = (losses[best] < losses) | ((losses[best] == losses) & (best < np.arange(N)))
    step = np.where(lower, best, np.arange(N))
    while True:
        nxt = step[step]
        if np.array_equal(nxt, step):
            break
        step = nxt
    minima, labels = np.unique(step, return_inverse=True)
    return labels, minima


def minima_table(data: LandscapeData, minima: np.ndarray, labels: np.ndarray) -> list[dict]:
    """One row per local minimum, lowest loss first: index, loss, best in-plane index, geodesic
    angle of its pose to the reference pose (degrees) and the basin's share of the sphere."""
    losses = data.point_losses
    best_inplane = data.losses.argmin(axis=1)
    R_min = torch.from_numpy(data.rotations[minima, best_inplane[minima]]).double()
    R_ref = torch.from_numpy(data.rotations[data.reference, 0]).double()
    angles = geodesic_angle_deg(R_min, R_ref.expand_as(R_min)).numpy()
    rows = [
        {
            "index": int(m),
            "loss": float(losses[m]),
            "inplane_index": int(best_inplane[m]),
            "angle_to_reference_deg": float(a),
            "basin_fraction": float((labels == k).mean()),
            "theta_deg": float(np.degrees(data.spherical[m, 0])),
            "phi_deg": float(np.degrees(data.spherical[m, 1])),
        }
        for k, (m, a) in enumerate(zip(minima, angles, strict=True))
    ]
    return sorted(rows, key=lambda r: r["loss"])


def _flat_cells(spherical: np.ndarray) -> list[np.ndarray]:
    """Voronoi cells of the points in the (phi, theta) plane, made bounded by periodic copies in
    phi and mirrored copies beyond the poles. Returns ``3 N`` polygons ``(P, 2)``: each point's
    cell, then the cells of its copies at ``phi - 2 pi`` and ``phi + 2 pi`` (they fill the map's
    left and right edges)."""
    theta, phi = spherical[:, 0], spherical[:, 1]
    base = np.stack([phi, theta], axis=1)
    copies = [base]
    for dphi in (-2 * np.pi, 2 * np.pi):
        copies.append(base + [dphi, 0.0])
    for pole in (0.0, np.pi):
        mirrored = np.stack([phi, 2 * pole - theta], axis=1)
        copies += [mirrored, mirrored + [2 * np.pi, 0.0], mirrored - [2 * np.pi, 0.0]]
    vor = Voronoi(np.concatenate(copies))
    cells = []
    for n in range(3 * len(base)):
        region = vor.regions[vor.point_region[n]]
        cells.append(vor.vertices[[v for v in region if v >= 0]])
    return cells


def _mark(ax, data: LandscapeData, minima: np.ndarray, view: np.ndarray | None = None) -> None:
    """Mark the local minima and the reference; on the sphere (``view``: unit vector towards the
    viewer) only the markers on the visible hemisphere, since matplotlib does not occlude them."""
    styles = (
        (np.asarray(minima), dict(c="white", edgecolors="black", s=30, marker="o", label="local minima")),
        (np.asarray([data.reference]), dict(c="red", edgecolors="black", s=120, marker="*", label="reference")),
    )
    for idx, style in styles:
        if view is None:
            sph = data.spherical[idx]
            ax.scatter(np.degrees(sph[:, 1]), np.degrees(sph[:, 0]), zorder=3, **style)
        else:
            p = data.cartesian[idx]
            p = p[p @ view > 0.05] * 1.02
            ax.scatter(p[:, 0], p[:, 1], p[:, 2], depthshade=False, **style)


def plot_flat(data: LandscapeData, minima: np.ndarray, values: np.ndarray | None = None,
              cmap: str = "viridis", label: str = "loss", title: str = "loss landscape") -> Figure:
    """theta/phi map: each point's Voronoi cell coloured by ``values`` (default: its loss)."""
    values = data.point_losses if values is None else values
    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot()
    norm = Normalize(vmin=float(values.min()), vmax=float(values.max()))
    cells = [np.degrees(c) for c in _flat_cells(data.spherical)]
    coll = PolyCollection(cells, array=np.tile(values, 3), cmap=cmap, norm=norm, edgecolors="face", linewidths=0.2)
    ax.add_collection(coll)
    _mark(ax, data, minima)
    ax.set_xlim(0, 360)
    ax.set_ylim(180, 0)
    ax.set_xlabel("phi (degrees)")
    ax.set_ylabel("theta (degrees)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    if label:
        fig.colorbar(coll, ax=ax, label=label)
    return fig


def plot_sphere(data: LandscapeData, minima: np.ndarray, values: np.ndarray | None = None,
                cmap: str = "viridis", label: str = "loss", title: str = "loss landscape on the sphere") -> Figure:
    """Spherical Voronoi cells (``scipy.spatial.SphericalVoronoi``) coloured by ``values``, two views."""
    values = data.point_losses if values is None else values
    sv = SphericalVoronoi(data.cartesian)
    sv.sort_vertices_of_regions()
    cells = [sv.vertices[region] for region in sv.regions]
    norm = Normalize(vmin=float(values.min()), vmax=float(values.max()))
    colours = colormaps[cmap](norm(values))
    fig = Figure(figsize=(11, 5.5))
    for k, (elev, azim) in enumerate(((25, 45), (-25, 225))):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        # autolim=False: the limits are set below, and matplotlib 3.11 pads ragged cells with uninitialised
        # vertices that its autoscaling reads (now and then an inf: "Axis limits cannot be NaN or Inf")
        ax.add_collection3d(Poly3DCollection(cells, facecolors=colours, edgecolors=colours, linewidths=0.1),
                            autolim=False)
        e, a = np.radians(elev), np.radians(azim)
        _mark(ax, data, minima, view=np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)]))
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_zlim(-1, 1)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
        ax.set_title(f"{title}\n(elevation {elev}, azimuth {azim})", fontsize=9)
    if label:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=fig.axes, label=label, shrink=0.7)
    return fig


def plot_regions(data: LandscapeData, minima: np.ndarray, labels: np.ndarray) -> Figure:
    """Basins of attraction: every cell coloured by the local minimum it descends to."""
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(len(minima))  # neighbouring basins get unrelated colours
    values = shuffled[labels].astype(np.float64)
    return plot_flat(data, minima, values, cmap="tab20", label="",
                     title=f"basins of attraction: {len(minima)} local minima")
