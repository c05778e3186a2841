"""A nearest-face rasterizer vectorised in torch: the CPU path of hard (nearest-face) rendering.

PyTorch3D's :class:`~pytorch3d.renderer.MeshRasterizer` is, on the CPU, its naive reference loop (no binning),
which visits every face for every pixel: ~25 ms per 64x64 image of an 800-face mesh on 2 cores, the cost of a
whole training step. :func:`rasterize_nearest` visits only the pixel centres inside each face's bounding box:
every (face, pixel) candidate gets its edge functions, the inside test (inclusive, like PyTorch3D's with no
blur), perspective-correct depth, and the nearest depth per pixel wins (``scatter_reduce`` amin). It returns
PyTorch3D's :class:`Fragments`, so its shaders work unchanged; a test pins identical ``pix_to_face`` and
``zbuf`` within float rounding. For a closed, consistently wound mesh (:func:`closed_orientation`, checked once
with trimesh) it skips the faces turned away from the camera: seen from outside, each of their pixels is
covered by a nearer front face, so the result is the same with about half the work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import trimesh
from pytorch3d.renderer.mesh.rasterizer import Fragments

from multipose.core.mesh import Mesh

#: (face, pixel) pairs rasterized at once by :func:`rasterize_nearest` (~40 bytes each).
MAX_CANDIDATES = 4_000_000

__all__ = ["MAX_CANDIDATES", "closed_orientation", "rasterize_nearest"]


def closed_orientation(mesh: Mesh) -> int:
    """1 when ``mesh`` is closed (watertight), consistently wound and its normals point outwards, -1 when
    they point inwards, 0 when it is open or inconsistent (then no face may be culled)."""
    shape = trimesh.Trimesh(mesh.vertices.double().numpy(), mesh.faces.numpy(), process=False)
    shape.merge_vertices()  # files that repeat a vertex per face are closed all the same
    if not (shape.is_watertight and shape.is_winding_consistent):
        return 0
    return 1 if shape.volume > 0 else -1


def rasterize_nearest(
    verts: torch.Tensor,
    faces: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor,
    size: tuple[int, int],
    max_candidates: int = MAX_CANDIDATES,
    cull_backfaces: int = 0,
    face_mask: torch.Tensor | None = None,
) -> Fragments:
    """The nearest face at every pixel centre, vectorised in torch (see the module docstring).

    ``verts (V, 3)`` mm, ``faces (F, 3)``, ``R (B, 3, 3)``, ``t (B, 3)``, ``K (B, 3, 3)`` (OpenCV,
    integer = pixel centre), ``size = (H, W)``. Returns PyTorch3D :class:`Fragments` with one face
    per pixel: ``pix_to_face (B, H, W, 1)`` packed ``b * F + f`` (-1 background), ``zbuf`` camera z
    in mm (-1 background), perspective-correct ``bary_coords (B, H, W, 1, 3)`` and ``dists`` 0.
    Faces with a vertex at ``z <= 0`` (behind the camera) are skipped, and with ``cull_backfaces``
    (:func:`closed_orientation` of a closed mesh: 1 outward, -1 inward normals) the faces turned away
    from the camera too; 0 keeps every face, as PyTorch3D; ``face_mask (B, F)`` bool: the faces each image may
    show (None: all; a renderer of several objects shows each sample's own). Images are processed in
    groups of at most ``max_candidates`` (face, pixel) pairs (a single larger image is done alone).
    No gradient flows (use :meth:`multipose.core.render.MeshRenderer._depth_from_faces` for that).
    """
    with torch.no_grad():
        B, (H, W) = R.shape[0], size
        setup = _face_setup(verts, faces, R, t, K, size, cull_backfaces, face_mask)
        per_image = setup.count.sum(dim=1).tolist()
        pix_to_face = torch.full((B * H * W,), -1, dtype=torch.long, device=R.device)
        zbuf = torch.full((B * H * W,), float("inf"), dtype=R.dtype, device=R.device)
        bary = torch.zeros(B * H * W, 3, dtype=R.dtype, device=R.device)
        start = 0
        while start < B:  # groups of images within the candidate budget
            stop, total = start + 1, per_image[start]
            while stop < B and total + per_image[stop] <= max_candidates:
                total, stop = total + per_image[stop], stop + 1
            _rasterize_group(slice(start, stop), setup, (H, W), pix_to_face, zbuf, bary)
            start = stop
        covered = pix_to_face >= 0
        zbuf = torch.where(covered, zbuf, torch.full_like(zbuf, -1.0))
    return Fragments(
        pix_to_face=pix_to_face.view(B, H, W, 1),
        zbuf=zbuf.view(B, H, W, 1),
        bary_coords=bary.view(B, H, W, 1, 3),
        dists=torch.zeros(B, H, W, 1, dtype=R.dtype, device=R.device),
    )


@dataclass(frozen=True)
class _Faces:
    """The faces of every image, projected: ``count (B, F')`` pixel centres to test (0: skipped), ``first (B, F',
    2)`` the first covered pixel and ``extent (B, F', 2)`` how many per axis, ``edges (B, F', 3, 3)`` the edge
    functions (barycentric ``b_i = a_i u + b_i v + c_i``), ``inv_z (B, F', 3)`` its vertices' 1/z; ``num_faces`` F
    of the mesh; ``ids (B, F')`` the mesh's face of each column (with a face mask: each image's own faces, F' the
    most any image has), or None: F' = F, every face."""

    count: torch.Tensor
    first: torch.Tensor
    extent: torch.Tensor
    edges: torch.Tensor
    inv_z: torch.Tensor
    num_faces: int
    ids: torch.Tensor | None = None


def _face_setup(verts: torch.Tensor, faces: torch.Tensor, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor,
                size: tuple[int, int], cull_backfaces: int, face_mask: torch.Tensor | None) -> _Faces:
    """Project the faces of each image (arguments as :func:`rasterize_nearest`'s): every face, or with
    ``face_mask`` only each image's own (a renderer of several objects sets up one object's faces per image, not
    the joined mesh's)."""
    H, W = size
    cam = verts[None] @ R.transpose(1, 2) + t[:, None, :]  # (B, V, 3)
    uv = (cam @ K.transpose(1, 2))[..., :2] / cam[..., 2:3]
    ids = own = None
    if face_mask is None:
        corner, face_uv = cam[:, faces], uv[:, faces]  # (B, F, 3, 3) camera-space vertices, (B, F, 3, 2)
    else:  # each image's faces first, in the mesh's order (so ties resolve as without the mask)
        counts = face_mask.sum(dim=1)
        ids = torch.argsort((~face_mask).to(torch.uint8), dim=1, stable=True)[:, : int(counts.max())]  # (B, F')
        own = torch.arange(ids.shape[1], device=ids.device)[None] < counts[:, None]  # (B, F') real columns
        image = torch.arange(R.shape[0], device=R.device)[:, None, None]
        corner, face_uv = cam[image, faces[ids]], uv[image, faces[ids]]  # (B, F', 3, 3), (B, F', 3, 2)
    face_z = corner[..., 2]  # (B, F, 3)
    lo, hi = face_uv.amin(dim=2), face_uv.amax(dim=2)  # (B, F, 2) bounding boxes in pixels
    first = lo.ceil().clamp(min=0).long()
    last = torch.minimum(hi.floor(), torch.tensor([W - 1.0, H - 1.0], device=R.device)).long()
    extent = (last - first + 1).clamp(min=0)  # (B, F, 2) pixel centres covered per axis
    count = extent[..., 0] * extent[..., 1] * (face_z.amin(dim=2) > 0)  # (B, F) candidates
    if own is not None:
        count = count * own
    if cull_backfaces:
        normal = torch.linalg.cross(corner[:, :, 1] - corner[:, :, 0], corner[:, :, 2] - corner[:, :, 0])
        count = count * ((normal * corner[:, :, 0]).sum(dim=-1) * cull_backfaces < 0)  # front faces only
    v0, v1, v2 = face_uv.unbind(dim=2)
    area = (v1[..., 0] - v0[..., 0]) * (v2[..., 1] - v0[..., 1]) - (v1[..., 1] - v0[..., 1]) * (
        v2[..., 0] - v0[..., 0]
    )
    count = count * (area.abs() > 1e-12)
    area = torch.where(area.abs() > 1e-12, area, torch.ones_like(area))
    coef = []
    for a, c in ((v1, v2), (v2, v0), (v0, v1)):  # edge function of the edge opposite each vertex
        coef.append(torch.stack([-(c[..., 1] - a[..., 1]), c[..., 0] - a[..., 0],
                                 (c[..., 1] - a[..., 1]) * a[..., 0] - (c[..., 0] - a[..., 0]) * a[..., 1]], -1))
    edges = torch.stack(coef, dim=2) / area[..., None, None]  # (B, F, 3, 3): rows b_0..b_2
    return _Faces(count, first, extent, edges, 1.0 / face_z, faces.shape[0], ids)


def _rasterize_group(images: slice, faces: _Faces, size: tuple[int, int], pix_to_face: torch.Tensor,
                     zbuf: torch.Tensor, bary: torch.Tensor) -> None:
    """Rasterize images ``images`` (a slice of the batch) of :func:`rasterize_nearest` into the flat
    ``(B * H * W,)`` outputs, in place."""
    H, W = size
    count, first, extent, edges, inv_z, F = (faces.count, faces.first, faces.extent, faces.edges, faces.inv_z,
                                             faces.num_faces)
    b, f = torch.nonzero(count[images], as_tuple=True)  # faces with candidates
    b = b + images.start
    n = count[b, f]
    owner = torch.repeat_interleave(torch.arange(len(n), device=n.device), n)  # (N,) face of each candidate
    offset = torch.arange(len(owner), device=n.device) - (torch.cumsum(n, 0) - n)[owner]
    width = extent[b, f, 0][owner]
    u = first[b, f, 0][owner] + offset % width
    v = first[b, f, 1][owner] + offset // width
    b, f = b[owner], f[owner]
    point = torch.stack([u, v, torch.ones_like(u)], dim=-1).to(edges.dtype)  # (N, 3)
    bc = (edges[b, f] @ point[:, :, None])[..., 0]  # (N, 3) screen-space barycentrics
    inside = (bc >= 0).all(dim=-1)
    bc, b, f, u, v = bc[inside], b[inside], f[inside], u[inside], v[inside]
    weighted = bc * inv_z[b, f]  # perspective correction: b_i / z_i
    depth = 1.0 / weighted.sum(dim=-1)
    pixel = (b * H + v) * W + u
    zbuf.scatter_reduce_(0, pixel, depth, "amin")
    win = depth == zbuf[pixel]  # on a tie (a shared edge at equal depth) one of the faces is kept
    pixel, depth = pixel[win], depth[win]
    f = f if faces.ids is None else faces.ids[b, f]  # the mesh's face
    pix_to_face[pixel] = b[win] * F + f[win]
    bary[pixel] = weighted[win] * depth[:, None]
