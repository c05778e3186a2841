"""CAD models: load, validate, normalise and simplify triangle meshes.

Conventions: units are millimetres; vertices are in the *model frame*, and the object rotates about
the model origin (so :attr:`Mesh.radius`, the largest vertex distance from the origin, bounds the
object under any rotation). A pose maps model points to the camera with ``x_cam = R @ x_model + t``.

Two copies of a model are used:

- the *data* mesh (:func:`load_mesh`): full resolution, renders the training images;
- the *loss* mesh (:func:`load_loss_mesh`): a quadric-decimated copy that the differentiable loss
  renderer rasterises many times per step (cost ~ pixels x faces), cached on disk.

Every problem with a user's file raises :class:`multipose.infra.errors.MeshError` with a one-line message
that names the file, what is wrong and how to fix it.
"""

from __future__ import annotations

import io
import logging
import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

from multipose.infra.atomic import atomic_write_bytes
from multipose.infra.content_key import content_key, file_sha256
from multipose.infra.errors import MeshError

logger = logging.getLogger(__name__)

#: Largest absolute vertex coordinate (mm) of a mesh loaded with ``normalize=True`` (config
#: ``NORMALIZE_VERTICES``), the scale the original's loss renderer normalised to.
NORMALIZED_EXTENT_MM = 100.0
#: What ``normalize=True`` does, as cache keys record it: a change of meaning changes every key.
NORMALIZATION = "vertex-mean-centre/max-abs-coordinate-100mm"

#: File extensions :func:`load_mesh` accepts (lower case).
SUPPORTED_EXTENSIONS = (".ply", ".obj")

#: Bump when the loss-mesh cache content changes meaning (decimation settings, normalisation...).
LOSS_MESH_CACHE_VERSION = 1

#: A decimation that ends above ``target * DECIMATION_TOLERANCE`` faces is reported as stalled.
DECIMATION_TOLERANCE = 1.1


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh as torch tensors.

    Attributes:
        vertices: ``(V, 3)`` float32, millimetres, model frame.
        faces: ``(F, 3)`` int64, indices into ``vertices`` (counter-clockwise seen from outside).
        name: where the mesh came from (e.g. the file name), used in messages.

    Compare meshes with ``torch.equal`` on the fields; ``==`` is identity (tensors have no single
    truth value).
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    name: str = ""

    def __post_init__(self) -> None:
        v, f = self.vertices, self.faces
        if not isinstance(v, torch.Tensor) or v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"Mesh.vertices must be a (V, 3) tensor, got {_shape_of(v)}")
        if not isinstance(f, torch.Tensor) or f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"Mesh.faces must be a (F, 3) tensor, got {_shape_of(f)}")
        if v.dtype != torch.float32:
            raise ValueError(f"Mesh.vertices must be float32, got {v.dtype}")
        if f.dtype != torch.int64:
            raise ValueError(f"Mesh.faces must be int64, got {f.dtype}")
        if v.device != f.device:
            raise ValueError(f"Mesh vertices on {v.device} but faces on {f.device}")

    @classmethod
    def from_arrays(cls, vertices: np.ndarray, faces: np.ndarray, name: str = "") -> Mesh:
        """Build a CPU mesh from ``(V, 3)`` float and ``(F, 3)`` integer arrays (copied)."""
        v = torch.as_tensor(np.ascontiguousarray(vertices, dtype=np.float32)).clone()
        f = torch.as_tensor(np.ascontiguousarray(faces, dtype=np.int64)).clone()
        return cls(vertices=v, faces=f, name=name)

    @classmethod
    def from_trimesh(cls, mesh: trimesh.Trimesh, name: str = "") -> Mesh:
        """Convert a :class:`trimesh.Trimesh` (vertices rounded to float32)."""
        return cls.from_arrays(mesh.vertices, mesh.faces, name=name)

    @property
    def num_vertices(self) -> int:
        """``V``."""
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        """``F``."""
        return int(self.faces.shape[0])

    @property
    def radius(self) -> float:
        """Bounding radius about the rotation centre: max vertex distance from the origin (mm)."""
        if self.num_vertices == 0:
            return 0.0
        return float(torch.linalg.vector_norm(self.vertices.double(), dim=1).max())

    @property
    def device(self) -> torch.device:
        return self.vertices.device

    def to(self, device: torch.device | str) -> Mesh:
        """The same mesh with both tensors on ``device``."""
        return Mesh(self.vertices.to(device), self.faces.to(device), self.name)

    def to_trimesh(self) -> trimesh.Trimesh:
        """A :class:`trimesh.Trimesh` copy (float64 vertices, on the CPU, no processing)."""
        return trimesh.Trimesh(
            vertices=self.vertices.detach().cpu().double().numpy(),
            faces=self.faces.detach().cpu().numpy(),
            process=False,
        )

    def __repr__(self) -> str:
        return (
            f"Mesh(name={self.name!r}, num_vertices={self.num_vertices}, "
            f"num_faces={self.num_faces}, radius={self.radius:.2f} mm, device={self.device})"
        )


def join_meshes(meshes: Sequence[Mesh]) -> tuple[Mesh, torch.Tensor]:
    """Several meshes as one (vertices and faces appended, face indices shifted) and the index of the mesh
    each face came from, ``(F,)`` int64; one mesh is returned as it is."""
    if len(meshes) == 1:
        return meshes[0], torch.zeros(meshes[0].num_faces, dtype=torch.int64, device=meshes[0].device)
    offsets = torch.tensor([0] + [m.num_vertices for m in meshes[:-1]]).cumsum(0).tolist()
    faces = torch.cat([m.faces + o for m, o in zip(meshes, offsets, strict=True)])
    owner = torch.cat([torch.full((m.num_faces,), i, dtype=torch.int64) for i, m in enumerate(meshes)])
    joined = Mesh(torch.cat([m.vertices for m in meshes]), faces, " + ".join(m.name for m in meshes))
    return joined, owner.to(joined.device)


def _shape_of(x: object) -> str:
    return f"shape {tuple(x.shape)}" if hasattr(x, "shape") else type(x).__name__


# -- loading ----------------------------------------------------------------------------------------


def _read_trimesh(path: Path) -> trimesh.Trimesh:
    """Read ``path`` with trimesh, faithfully; every failure becomes a :class:`MeshError`."""
    if not path.exists():
        raise MeshError(
            f"mesh file {path} does not exist; check the path (MODEL_PATH_DATA / MODEL_PATH_LOSS)"
        )
    if not path.is_file():
        raise MeshError(f"mesh path {path} is not a file; give the path of a .ply or .obj file")
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise MeshError(
            f"mesh file {path} has unsupported extension {path.suffix or '(none)'!r}; "
            f"convert it to one of {', '.join(SUPPORTED_EXTENSIONS)} (e.g. with MeshLab or Blender)"
        )
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MeshError(
            f"cannot read mesh file {path}: {e.strerror or e}; check its permissions"
        ) from e
    if not data.strip():
        raise MeshError(f"mesh file {path} is empty; re-export the model")
    source: io.IOBase = io.BytesIO(data)
    if ext == ".obj":
        # OBJ is plain text. Decode it here: on non-UTF-8 bytes trimesh would reach for an
        # optional charset detector and fail with an unrelated ImportError.
        if b"\x00" in data:
            raise MeshError(
                f"mesh file {path} contains binary data, not a text OBJ; re-export it as OBJ or PLY"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")  # comments/material names in a legacy encoding
        source = io.StringIO(text)
    try:
        loaded = trimesh.load(source, file_type=ext[1:], force="mesh", process=False)
    except Exception as e:  # trimesh raises anything from ValueError to IndexError on bad files
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        if ext == ".obj" and isinstance(e, IndexError):
            problem = f"has face indices that refer to missing vertices ({reason})"
        else:
            problem = (
                f"cannot be parsed as {ext[1:].upper()}; it may be truncated or corrupt ({reason})"
            )
        raise MeshError(
            f"mesh file {path} {problem}; check that it is a valid triangle mesh and re-export it"
        ) from e
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshError(
            f"mesh file {path} holds a {type(loaded).__name__}, not a triangle mesh; "
            "export the model as a triangle mesh"
        )
    return loaded


def _validate_arrays(vertices: np.ndarray, faces: np.ndarray, path: Path | str) -> None:
    """Check a loaded mesh; raise :class:`MeshError` naming ``path`` on any defect."""
    if len(faces) == 0:
        raise MeshError(
            f"mesh file {path} has no triangle faces (a point cloud or a line drawing?); "
            "export the model as a triangle mesh"
        )
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise MeshError(f"mesh file {path} has faces of shape {faces.shape}; triangulate the model")
    if len(vertices) == 0 or vertices.ndim != 2 or vertices.shape[1] != 3:
        raise MeshError(f"mesh file {path} has no usable vertices (shape {vertices.shape})")
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MeshError(
            f"mesh file {path} has {int(bad.sum())} vertices with non-finite (NaN/inf) coordinates "
            f"(first: vertex {first}); repair or re-export the model"
        )
    lo, hi = int(faces.min()), int(faces.max())
    if lo < 0 or hi >= len(vertices):
        raise MeshError(
            f"mesh file {path} has face indices out of range [{lo}, {hi}] for {len(vertices)} "
            "vertices; the file is corrupt, re-export the model"
        )


def _clean(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Merge coincident vertices (ignoring normals/UVs) and drop unreferenced ones, in place."""
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    mesh.remove_unreferenced_vertices()
    return mesh


def normalize_vertices(vertices: torch.Tensor, extent: float = NORMALIZED_EXTENT_MM) -> torch.Tensor:
    """Centre on the vertex mean and scale so that the largest absolute coordinate is ``extent``.

    ``(V, 3) -> (V, 3)``: ``(v - m) * extent / max_{i,a} |v_ia - m_a|`` with ``m`` the mean vertex, as
    the original's data generator (``DatasetGeneratorOpenGL``) once did with ``extent`` = 100 mm (later removed
    there; its final loss renderer scales without centring, docs/original.md); the model
    origin (the rotation centre) becomes the vertex mean. Computed in float64, returned in the input dtype.
    """
    v = vertices.double()
    v = v - v.mean(dim=0)
    scale = v.abs().max()
    if not bool(scale > 0):
        raise ValueError("cannot normalise a mesh whose vertices all coincide")
    return (v * (extent / scale)).to(vertices.dtype)


def normalization_key(normalize: bool) -> str:
    """How a mesh loaded with ``normalize`` was transformed, for cache keys: :data:`NORMALIZATION` or ``"none"``."""
    return NORMALIZATION if normalize else "none"


def load_mesh(path: str | os.PathLike, normalize: bool = False) -> Mesh:
    """Load a PLY or OBJ triangle mesh (millimetres) as a CPU :class:`Mesh`.

    The file is read faithfully (no trimesh processing); coincident vertices are then merged and
    unreferenced ones dropped, which changes neither the surface nor its rendering.

    Args:
        path: a ``.ply`` or ``.obj`` file.
        normalize: config ``NORMALIZE_VERTICES``. If true, the mesh is centred on its vertex mean and
            uniformly scaled so that its largest absolute coordinate is :data:`NORMALIZED_EXTENT_MM`
            = 100 mm (:func:`normalize_vertices`). Poses then refer to that frame.

    Returns:
        ``Mesh`` with vertices ``(V, 3)`` float32 and faces ``(F, 3)`` int64.

    Raises:
        MeshError: missing file, unsupported extension, unreadable or empty file, no triangles,
            non-finite coordinates, face indices out of range.
    """
    path = Path(path)
    loaded = _read_trimesh(path)
    vertices = np.asarray(loaded.vertices)
    faces = np.asarray(loaded.faces)
    _validate_arrays(vertices, faces, path)
    _clean(loaded)
    mesh = Mesh.from_trimesh(loaded, name=path.name)
    if normalize:
        try:
            mesh = Mesh(normalize_vertices(mesh.vertices), mesh.faces, mesh.name)
        except ValueError as e:
            raise MeshError(f"mesh file {path} cannot be normalised: all vertices coincide") from e
    logger.debug("loaded %r from %s", mesh, path)
    return mesh


# -- simplification ---------------------------------------------------------------------------------


def simplify_mesh(mesh: Mesh, target_faces: int) -> Mesh:
    """Quadric-decimate ``mesh`` to about ``target_faces`` faces (``<= target_faces``).

    Uses ``trimesh.Trimesh.simplify_quadric_decimation`` (fast-simplification) after merging
    coincident vertices. ``target_faces <= 0`` or ``>= mesh.num_faces`` returns ``mesh`` unchanged.
    If decimation stalls above ``1.1 * target_faces`` (typical of meshes made of long thin
    triangles), a warning is logged and the partially decimated mesh is returned.

    Args:
        mesh: ``(V, 3)`` / ``(F, 3)`` mesh on any device.
        target_faces: wanted face count.

    Returns:
        A new ``Mesh`` on ``mesh``'s device, ``(V', 3)`` / ``(F', 3)``.

    Raises:
        MeshError: decimation produced an empty or non-finite mesh.
    """
    target_faces = int(target_faces)
    if target_faces <= 0 or target_faces >= mesh.num_faces:
        return mesh
    tm = _clean(mesh.to_trimesh())
    if len(tm.faces) <= target_faces:
        return Mesh.from_trimesh(tm, name=mesh.name).to(mesh.device)
    start = time.perf_counter()
    simplified = tm.simplify_quadric_decimation(face_count=target_faces)
    simplified = _clean(simplified)
    seconds = time.perf_counter() - start
    vertices = np.asarray(simplified.vertices)
    faces = np.asarray(simplified.faces)
    if len(faces) == 0 or not np.isfinite(vertices).all():
        raise MeshError(
            f"simplifying mesh {mesh.name or '(unnamed)'} from {mesh.num_faces} to {target_faces} "
            "faces gave an empty or non-finite mesh; use a larger target face count"
        )
    if len(faces) > DECIMATION_TOLERANCE * target_faces:
        logger.warning(
            "decimation of mesh %s stalled at %d faces (target %d, from %d): the mesh probably has "
            "long thin triangles or very large coordinates; remesh it with well-shaped triangles "
            "(e.g. subdivide it in MeshLab/Blender) or raise the target face count",
            mesh.name or "(unnamed)", len(faces), target_faces, mesh.num_faces,
        )
    logger.debug(
        "decimated %s: %d -> %d faces in %.3f s", mesh.name, mesh.num_faces, len(faces), seconds
    )
    return Mesh.from_arrays(vertices, faces, name=mesh.name).to(mesh.device)


# -- loss-mesh cache --------------------------------------------------------------------------------


def _cache_path(cache_dir: Path, content_sha: str, target_faces: int, normalize: bool) -> Path:
    key = (
        f"{content_sha}|faces={target_faces}|normalize={normalization_key(normalize)}"
        f"|v{LOSS_MESH_CACHE_VERSION}"
    )
    key_sha = content_key(key)[:24]
    norm = "norm" if normalize else "raw"
    return cache_dir / "meshes" / f"{content_sha[:12]}-f{target_faces}-{norm}-{key_sha}.npz"


def _read_cache(cache_file: Path, content_sha: str, name: str) -> tuple[Mesh, int] | None:
    """The cached mesh and the source face count, or ``None`` if absent, stale or corrupt."""
    if not cache_file.is_file():
        return None
    try:
        # Open the file here: np.load leaks its own handle when the zip is corrupt.
        with open(cache_file, "rb") as f, np.load(f, allow_pickle=False) as npz:
            vertices = np.asarray(npz["vertices"])
            faces = np.asarray(npz["faces"])
            source_sha = str(npz["source_sha256"])
            version = int(npz["version"])
            source_faces = int(npz["source_faces"])
        if source_sha != content_sha or version != LOSS_MESH_CACHE_VERSION:
            raise ValueError("key mismatch")
        _validate_arrays(vertices, faces, cache_file)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, MeshError) as e:
        logger.warning("loss-mesh cache file %s is unusable (%s); rebuilding it", cache_file, e)
        return None
    return Mesh.from_arrays(vertices, faces, name=name), source_faces


def loss_mesh_cache_file(
    path: str | os.PathLike, target_faces: int, cache_dir: str | os.PathLike, normalize: bool = False
) -> Path:
    """Where :func:`load_loss_mesh` stores (or finds) the decimated copy of the model file ``path``
    (which must exist: the name hashes its content)."""
    return _cache_path(Path(cache_dir), file_sha256(path), max(int(target_faces), 0), normalize)


def load_loss_mesh(
    path: str | os.PathLike,
    target_faces: int,
    cache_dir: str | os.PathLike,
    normalize: bool = False,
) -> Mesh:
    """The simplified copy of a CAD model that the loss renderer uses, cached on disk.

    Equivalent to ``simplify_mesh(load_mesh(path, normalize), target_faces)`` (normalisation uses
    the full-resolution mesh, so the copy stays in the data mesh's frame). The result is stored as
    ``cache_dir/meshes/*.npz``, keyed by the sha256 of the file *content*, ``target_faces``,
    ``normalize`` and :data:`LOSS_MESH_CACHE_VERSION`: editing the file invalidates the entry, a
    renamed copy reuses it. A corrupt cache file is logged and rebuilt. Writes are atomic.

    Args:
        path: ``.ply`` / ``.obj`` model (mm).
        target_faces: face budget for the loss renderer; ``<= 0`` keeps every face.
        cache_dir: cache root (created if needed).
        normalize: as in :func:`load_mesh`.

    Returns:
        CPU ``Mesh`` with ``(V, 3)`` float32 vertices and ``(F, 3)`` int64 faces.
    """
    path = Path(path)
    if not path.is_file():
        _read_trimesh(path)  # raises the right MeshError (missing / not a file)
    content_sha = file_sha256(path)
    target_faces = max(int(target_faces), 0)
    cache_file = _cache_path(Path(cache_dir), content_sha, target_faces, normalize)
    cached = _read_cache(cache_file, content_sha, path.name)
    if cached is not None:
        mesh, source_faces = cached
        logger.info(
            "loss mesh %s: %d -> %d faces (cache hit: %s)",
            path.name, source_faces, mesh.num_faces, cache_file,
        )
        return mesh
    full = load_mesh(path, normalize=normalize)
    start = time.perf_counter()
    mesh = simplify_mesh(full, target_faces)
    seconds = time.perf_counter() - start
    buf = io.BytesIO()
    np.savez(
        buf,
        vertices=mesh.vertices.numpy(),
        faces=mesh.faces.numpy(),
        source_sha256=np.array(content_sha),
        source_faces=np.array(full.num_faces),
        target_faces=np.array(target_faces),
        normalize=np.array(bool(normalize)),
        version=np.array(LOSS_MESH_CACHE_VERSION),
    )
    atomic_write_bytes(cache_file, buf.getvalue())
    logger.info(
        "loss mesh %s: %d -> %d faces (target %d, %.2f s; cache miss, wrote %s)",
        path.name, full.num_faces, mesh.num_faces, target_faces, seconds, cache_file,
    )
    return mesh
