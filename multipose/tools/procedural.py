"""Procedural T-LESS-like CAD models: the default objects, so the repository runs without assets.

The part resembles T-LESS's electrical plugs/connectors: a 68 mm tall stepped body of revolution
(base flange with a chamfer, cylindrical body, chamfered shoulder, neck, cap with a top chamfer).
Two variants, both with the symmetry axis on the model z axis and the model origin at the
bounding-box centre (units: mm):

- ``"revolution"``: the body alone -- continuous symmetry about z;
- ``"2fold"``: the body plus two rectangular lugs at +x and -x -- exactly a 2-fold symmetry
  (180 degrees about z), no other rotational symmetry.

Every triangle is well shaped (edges <= ~6 mm, longest edge <= 8x its altitude even in the fans at
the axis) so that quadric decimation reaches any target: a profile sampled every few millimetres,
caps included, is revolved with :func:`trimesh.creation.revolve`, and the lugs are uniformly
subdivided boxes.
``trimesh.creation.cylinder``-style long thin triangles stall decimation (see ``shared/STACK.md``).

With them, ``models_info.json`` describes both in the BOP format (object ids :data:`OBJ_IDS`: diameter,
bounding box, ``symmetries_discrete`` / ``symmetries_continuous``), so evaluation reports
symmetry-aware rotation errors (``[Evaluation] MODELS_INFO``, ``OBJ_ID``).

Regenerate the committed files (deterministic, binary PLY)::

    python -m multipose.tools.procedural --out data/cad-files
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import trimesh
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from multipose.infra.atomic import atomic_write_bytes

#: Allowed ``symmetry`` values of :func:`make_part`.
SYMMETRIES = ("revolution", "2fold")

#: File written for each symmetry by :func:`write_default_models`.
FILE_NAMES = {
    "revolution": "tless_like_revolution.ply",
    "2fold": "tless_like_2fold.ply",
}

#: BOP object id of each variant in ``models_info.json``.
OBJ_IDS = {"2fold": 1, "revolution": 2}

#: Profile corners ``(radius, height)`` in mm, counter-clockwise in the (r, z) half plane, from the
#: bottom centre to the top centre (so the revolved surface is closed and its normals face out).
PROFILE_MM: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),  # bottom centre
    (28.0, 0.0),  # flange underside
    (30.0, 2.0),  # flange chamfer
    (30.0, 6.0),  # flange rim
    (22.0, 6.0),  # flange top
    (22.0, 40.0),  # body
    (14.0, 44.0),  # shoulder chamfer
    (14.0, 56.0),  # neck
    (18.0, 56.0),  # cap underside
    (18.0, 65.0),  # cap side
    (15.0, 68.0),  # top chamfer
    (0.0, 68.0),  # top centre
)

#: Angular sections of the revolution (a multiple of 4: the sampled body also maps onto itself under
#: 90-degree turns, so only the lugs break the symmetry of the "2fold" part).
SECTIONS = 48

#: Longest profile segment (mm); 2 * pi * 22 / 48 = 2.9 mm is the body's tangential edge.
PROFILE_EDGE_MM = 4.0

#: One lug: ``(x_min, x_max), (y_min, y_max), (z_min, z_max)`` in the profile's frame (mm). Its
#: inner face lies inside the body (r = 22), so the union looks solid without a boolean operation.
LUG_BOUNDS_MM = ((20.0, 36.0), (-5.0, 5.0), (12.0, 30.0))

#: Uniform midpoint subdivisions of the lug box (12 -> 12 * 4**n triangles).
LUG_SUBDIVISIONS = 2


def _sample_polyline(corners: Sequence[tuple[float, float]], max_edge: float) -> np.ndarray:
    """Resample a polyline so no segment is longer than ``max_edge``: ``(N, 2) -> (M, 2)``.

    Every corner is kept; each edge is split into equal parts.
    """
    pts = np.asarray(corners, dtype=np.float64)
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / max_edge - 1e-9)))
        t = np.arange(1, n + 1, dtype=np.float64)[:, None] / n
        out.append(a + (b - a) * t)
    return np.concatenate(out, axis=0)


def _body() -> trimesh.Trimesh:
    """The stepped body of revolution about z (profile frame: base at z = 0)."""
    profile = _sample_polyline(PROFILE_MM, PROFILE_EDGE_MM)
    body = trimesh.creation.revolve(profile, sections=SECTIONS, process=False)
    # revolve repeats the axis points once per section: merge them to close the surface.
    body.merge_vertices()
    body.remove_unreferenced_vertices()
    return body


def _lug(angle: float) -> trimesh.Trimesh:
    """A subdivided box lug, rotated by ``angle`` radians about z."""
    (x0, x1), (y0, y1), (z0, z1) = LUG_BOUNDS_MM
    box = trimesh.creation.box(
        extents=(x1 - x0, y1 - y0, z1 - z0),
        transform=trimesh.transformations.translation_matrix(
            ((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2)
        ),
    )
    vertices, faces = np.asarray(box.vertices), np.asarray(box.faces)
    for _ in range(LUG_SUBDIVISIONS):
        vertices, faces = trimesh.remesh.subdivide(vertices, faces)
    rotation = trimesh.transformations.rotation_matrix(angle, (0.0, 0.0, 1.0))
    vertices = trimesh.transform_points(vertices, rotation)
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)


def make_part(symmetry: str) -> trimesh.Trimesh:
    """Build the T-LESS-like part with the given symmetry (mm, z = symmetry axis).

    Args:
        symmetry: ``"revolution"`` (continuous symmetry about z) or ``"2fold"`` (two lugs on +-x:
            symmetric under 180 degrees about z only).

    Returns:
        A closed triangle mesh with outward normals, origin at its bounding-box centre, vertices
        rounded to float32 (what a PLY file stores). Deterministic.

    Raises:
        ValueError: unknown ``symmetry``.
    """
    if symmetry not in SYMMETRIES:
        raise ValueError(f"unknown symmetry {symmetry!r}; allowed values: {', '.join(SYMMETRIES)}")
    parts = [_body()]
    if symmetry == "2fold":
        parts += [_lug(0.0), _lug(np.pi)]
    vertices = np.concatenate([np.asarray(p.vertices) for p in parts])
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    faces = np.concatenate([np.asarray(p.faces) + o for p, o in zip(parts, offsets, strict=True)])
    vertices = vertices - (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    # Round to float32 now, so the mesh equals what its PLY file loads back as.
    vertices = vertices.astype(np.float32).astype(np.float64)
    return trimesh.Trimesh(vertices=vertices, faces=faces.astype(np.int64), process=False)


def export_ply_bytes(mesh: trimesh.Trimesh) -> bytes:
    """Binary little-endian PLY of ``mesh`` (positions and faces only; deterministic)."""
    clean = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)
    # Typed as dict | bytes | str for every format; a binary PLY is bytes.
    return cast(bytes, clean.export(file_type="ply", encoding="binary", vertex_normal=False))


def models_info_entry(mesh: trimesh.Trimesh, symmetry: str) -> dict:
    """The BOP ``models_info.json`` entry of a part: ``diameter`` (largest vertex distance, mm),
    ``min_x/y/z``, ``size_x/y/z`` and its symmetries about the model z axis through the origin --
    ``symmetries_discrete`` (row-major 4x4, mm) for ``"2fold"`` (180 degrees), ``symmetries_continuous``
    for ``"revolution"``."""
    vertices = np.asarray(mesh.vertices)
    hull = vertices[ConvexHull(vertices).vertices]
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    entry: dict = {"diameter": round(float(pdist(hull).max()), 4)}
    for axis, low, size in zip("xyz", lo, hi - lo, strict=True):
        entry[f"min_{axis}"] = round(float(low), 4)
        entry[f"size_{axis}"] = round(float(size), 4)
    if symmetry == "2fold":
        entry["symmetries_discrete"] = [[-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]]
    else:
        entry["symmetries_continuous"] = [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]
    return entry


def write_default_models(out_dir: str | os.PathLike) -> list[Path]:
    """Write every variant as ``out_dir/<FILE_NAMES[symmetry]>`` and their ``models_info.json``
    (atomic). Returns the paths."""
    out_dir = Path(out_dir)
    paths, info = [], {}
    for symmetry in SYMMETRIES:
        path = out_dir / FILE_NAMES[symmetry]
        mesh = make_part(symmetry)
        atomic_write_bytes(path, export_ply_bytes(mesh))
        info[str(OBJ_IDS[symmetry])] = models_info_entry(mesh, symmetry)
        paths.append(path)
    info_path = out_dir / "models_info.json"
    atomic_write_bytes(info_path, (json.dumps(dict(sorted(info.items())), indent=2) + "\n").encode())
    return [*paths, info_path]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m multipose.tools.procedural --out DIR``: (re)generate the default CAD models."""
    parser = argparse.ArgumentParser(
        prog="python -m multipose.tools.procedural", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--out", default="data/cad-files", help="output folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    for path in write_default_models(args.out):
        if path.suffix == ".json":
            print(f"wrote {path}")
            continue
        mesh = cast(trimesh.Trimesh, trimesh.load(path, force="mesh", process=False))  # typed as Geometry
        print(f"wrote {path} ({len(mesh.vertices)} vertices, {len(mesh.faces)} faces)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
