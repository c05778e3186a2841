"""Rendering a mesh with PyTorch3D in our (OpenCV / BOP) camera convention.

This is the only module that knows PyTorch3D's camera convention: poses ``R (B, 3, 3)``,
``t (B, 3)`` and intrinsics ``K (B, 3, 3)`` are OpenCV model-to-camera (``x_cam = R x + t``, image y
down, pixel centres at integer coordinates) and are converted with
:func:`pytorch3d.utils.cameras_from_opencv_projection`. That function treats a pixel's *corner* as
its integer coordinate (a principal point ``c`` lands at ``c - 0.5`` in OpenCV terms), so we pass
``cx + 0.5, cy + 0.5``; a test pins that a vertex projected with ``cv2.projectPoints`` lands on the
rendered silhouette at the same pixel.

Depth maps hold the camera-space z of the visible surface in mm (0 = background). Two ways to get
depth gradients (``RenderSettings.depth_gradient``):

- ``"pytorch3d"``: PyTorch3D's ``zbuf`` and its own rasterizer backward. On CPU this backward is
  single-threaded at ~40 us per covered pixel and dominates a training step.
- ``"torch"``: rasterize without gradients (only ``pix_to_face`` is kept), then recompute each
  covered pixel's depth in torch from the projected vertices of its visible face: screen-space
  barycentrics of the pixel centre from edge functions, then perspective-correct depth
  ``z = 1 / sum_i(b_i / z_i)``. Because the barycentrics are recomputed from the projected
  vertices, the gradient keeps the term where the surface slides under a pixel, and it matches
  PyTorch3D's backward (tested). Visibility (which face a pixel sees) is piecewise constant in
  both paths.

``"auto"`` uses ``"torch"`` on CPU (measured: ``benchmarks/render.py``) and ``"pytorch3d"`` on CUDA.
Soft depth (``shader="soft-depth"``) always uses PyTorch3D's ``SoftDepthShader``.

Two rasterizers for hard (nearest-face) rendering (``RenderSettings.rasterizer``): ``"pytorch3d"``
(:class:`pytorch3d.renderer.MeshRasterizer`, on CPU its naive reference loop) and ``"torch"``
(:func:`multipose.core.rasterizer.rasterize_nearest`, vectorised, the same fragments).
``"auto"`` uses ``"torch"`` on CPU and ``"pytorch3d"`` on CUDA. Soft depth always uses PyTorch3D.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from pytorch3d.renderer import (
    BlendParams,
    DirectionalLights,
    HardPhongShader,
    Materials,
    MeshRasterizer,
    RasterizationSettings,
    TexturesVertex,
)
from pytorch3d.renderer.mesh.rasterizer import Fragments
from pytorch3d.renderer.mesh.shader import SoftDepthShader
from pytorch3d.structures import Meshes
from pytorch3d.utils import cameras_from_opencv_projection
from torch import nn

from multipose.core.geometry import intrinsics_from_fov
from multipose.core.mesh import Mesh, join_meshes
from multipose.core.rasterizer import closed_orientation, rasterize_nearest

logger = logging.getLogger(__name__)

SHADERS = ("hard-depth", "soft-depth")
DEPTH_GRADIENTS = ("auto", "torch", "pytorch3d")
RASTERIZERS = ("auto", "torch", "pytorch3d")

__all__ = [
    "DEPTH_GRADIENTS",
    "SHADERS",
    "LossView",
    "MeshRenderer",
    "RASTERIZERS",
    "RenderSettings",
    "Rendering",
]


@dataclass(frozen=True)
class RenderSettings:
    """How depth maps are rendered.

    Attributes:
        shader: ``"hard-depth"`` (z-buffer of the nearest face) or ``"soft-depth"`` (PyTorch3D's
            SoftDepthShader: a sigmoid-weighted blend of the ``faces_per_pixel`` nearest faces).
        faces_per_pixel: faces kept per pixel by the rasterizer (>1 only matters for soft depth,
            which needs about 10: with fewer, faces in front that do not cover the pixel but lie
            within the blur radius crowd out the covering one).
        depth_gradient: ``"auto"``, ``"torch"`` or ``"pytorch3d"`` (see the module docstring).
        rasterizer: ``"auto"``, ``"torch"`` or ``"pytorch3d"`` for hard shading (module docstring).
        sigma: soft rasterization width (NDC units squared) for the soft shader; the blur radius
            is derived from it as in SoftRas (probability 1e-4 at the edge of the blur).
    """

    shader: Literal["hard-depth", "soft-depth"] = "hard-depth"
    faces_per_pixel: int = 1
    depth_gradient: Literal["auto", "torch", "pytorch3d"] = "auto"
    sigma: float = 1e-5
    rasterizer: Literal["auto", "torch", "pytorch3d"] = "auto"

    def __post_init__(self) -> None:
        if self.shader not in SHADERS:
            raise ValueError(f"unknown shader {self.shader!r}; expected one of {SHADERS}")
        if self.depth_gradient not in DEPTH_GRADIENTS:
            raise ValueError(
                f"unknown depth_gradient {self.depth_gradient!r}; expected one of {DEPTH_GRADIENTS}"
            )
        if self.rasterizer not in RASTERIZERS:
            raise ValueError(f"unknown rasterizer {self.rasterizer!r}; expected one of {RASTERIZERS}")
        if self.faces_per_pixel < 1:
            raise ValueError(f"faces_per_pixel must be >= 1, got {self.faces_per_pixel}")

    def resolved_gradient(self, device: torch.device) -> str:
        """The depth-gradient path used on ``device`` (``auto`` resolved)."""
        if self.shader == "soft-depth":
            return "pytorch3d"
        if self.depth_gradient != "auto":
            return self.depth_gradient
        return "torch" if device.type == "cpu" else "pytorch3d"

    def resolved_rasterizer(self, device: torch.device, faces_per_pixel: int) -> str:
        """The rasterizer used on ``device`` for ``faces_per_pixel`` faces (``auto`` resolved):
        PyTorch3D's whenever more than the nearest face, or soft shading, is needed."""
        if self.shader == "soft-depth" or faces_per_pixel > 1:
            return "pytorch3d"
        if self.rasterizer != "auto":
            return self.rasterizer
        return "torch" if device.type == "cpu" else "pytorch3d"


@dataclass(frozen=True)
class Rendering:
    """A rendered batch.

    Attributes:
        depth: ``(B, H, W)`` camera-space z in mm of the visible surface; 0 where nothing is seen.
        mask: ``(B, H, W)`` silhouette: hard ``{0, 1}`` float (no gradient), or soft coverage in
            ``[0, 1]`` (differentiable) for the soft shader.
        rgb: ``(B, 3, H, W)`` Phong-shaded colour in ``[0, 1]`` on black, or None when not asked.
    """

    depth: torch.Tensor
    mask: torch.Tensor
    rgb: torch.Tensor | None = None


class MeshRenderer(nn.Module):
    """Renders one mesh, or one of several per sample, for any batch of poses, on the device of its buffers
    (``.to(device)``).

    Args:
        mesh: the model, vertices in mm in the model frame; or a sequence of N models (a head of several
            objects): they are joined into one vertex and face list, and each sample of a render call shows the
            object ``objects[b]`` (the other objects' faces are skipped), so one call renders a mixed batch.
        settings: shader and depth-gradient choices.
    """

    verts: torch.Tensor  # buffers (register_buffer in __init__)
    faces: torch.Tensor
    face_object: torch.Tensor  # (F,) int64: the object of each face

    def __init__(self, mesh: Mesh | Sequence[Mesh], settings: RenderSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or RenderSettings()
        if self.settings.shader == "soft-depth" and self.settings.faces_per_pixel < 8:
            logger.warning(
                "soft-depth with FACES_PER_PIXEL = %d: faces near a pixel can crowd out the one covering "
                "it, giving wrong depth; use [Rendering] FACES_PER_PIXEL: 10",
                self.settings.faces_per_pixel,
            )
        meshes = [mesh] if isinstance(mesh, Mesh) else list(mesh)
        joined, face_object = join_meshes(meshes)
        self.name = joined.name
        self.num_objects = len(meshes)
        self.register_buffer("verts", joined.vertices.float().contiguous(), persistent=False)
        self.register_buffer("faces", joined.faces.long().contiguous(), persistent=False)
        self.register_buffer("face_object", face_object, persistent=False)
        orientations = {closed_orientation(m) for m in meshes}  # back faces are culled when all agree
        self.orientation = orientations.pop() if len(orientations) == 1 else 0

    @property
    def device(self) -> torch.device:
        return self.verts.device

    def forward(
        self, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor, image_size: int | tuple[int, int],
        objects: torch.Tensor | None = None,
    ) -> Rendering:
        """Depth and silhouette: ``R (B,3,3), t (B,3), K (B,3,3) or (3,3)`` -> :class:`Rendering`
        with ``depth, mask (B, H, W)``; ``image_size`` is ``S`` or ``(H, W)``; ``objects (B,)`` int64: the object
        each sample shows (needed when the renderer holds several)."""
        R, t, K, size = self._check(R, t, K, image_size)
        face_mask = self._faces_of(objects, R.shape[0])
        path = self.settings.resolved_gradient(self.device)
        soft = self.settings.shader == "soft-depth"
        needs_graph = torch.is_grad_enabled() and (R.requires_grad or t.requires_grad)
        if path == "torch" and not soft:
            with torch.no_grad():
                fragments, _, _ = self._rasterize(R, t, K, size, faces_per_pixel=1, face_mask=face_mask)
            p2f = fragments.pix_to_face[..., 0]
            mask = (p2f >= 0).to(R.dtype)
            depth = self._depth_from_faces(p2f, R, t, K) if needs_graph else self._zbuf(fragments)
            return Rendering(depth=depth, mask=mask)
        fragments, meshes, cameras = self._rasterize(
            R, t, K, size, faces_per_pixel=self.settings.faces_per_pixel, soft=soft, differentiable=needs_graph,
            face_mask=face_mask,
        )
        if soft:
            shader = SoftDepthShader(
                device=self.device, cameras=cameras, blend_params=BlendParams(sigma=self.settings.sigma)
            )
            depth = shader(fragments, meshes, zfar=0.0)[..., 0]
            prob = torch.sigmoid(-fragments.dists / self.settings.sigma) * (fragments.pix_to_face >= 0)
            mask = 1.0 - torch.prod(1.0 - prob, dim=-1)
            return Rendering(depth=depth, mask=mask)
        mask = (fragments.pix_to_face[..., 0] >= 0).to(R.dtype)
        return Rendering(depth=self._zbuf(fragments), mask=mask)

    def render_rgb(
        self,
        R: torch.Tensor,
        t: torch.Tensor,
        K: torch.Tensor,
        image_size: int | tuple[int, int],
        light_dir: torch.Tensor | None = None,
        color: tuple[float, float, float] = (0.75, 0.75, 0.75),
        ambient: float = 0.35,
        diffuse: float = 0.6,
        specular: float = 0.25,
        shininess: float = 30.0,
        objects: torch.Tensor | None = None,
    ) -> Rendering:
        """Phong-shaded RGB of a uniformly coloured surface on black, plus depth and mask (no
        gradient through the torch rasterizer: used for data, under ``torch.no_grad``); ``objects`` as
        :meth:`forward`.

        ``light_dir (B, 3)`` (or ``(3,)``) is the direction *towards* the light in camera
        coordinates (OpenCV: ``[0, 0, -1]`` is a headlight at the camera, the default); one
        directional light per sample. Returns ``rgb (B, 3, H, W)`` in ``[0, 1]``.
        """
        R, t, K, size = self._check(R, t, K, image_size)
        B = R.shape[0]
        face_mask = self._faces_of(objects, B)
        if light_dir is None:
            light_dir = torch.tensor([0.0, 0.0, -1.0], device=R.device, dtype=R.dtype)
        light_dir = light_dir.to(R).expand(B, 3)
        light_dir = light_dir / light_dir.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        # PyTorch3D's world frame is our model frame: a camera-frame direction d is R^T d there.
        light_model = (R.transpose(1, 2) @ light_dir[:, :, None])[..., 0]
        fragments, meshes, cameras = self._rasterize(R, t, K, size, faces_per_pixel=1, face_mask=face_mask)
        rgb_vertex = torch.tensor(color, device=R.device, dtype=R.dtype).expand_as(self.verts)
        meshes.textures = TexturesVertex(verts_features=rgb_vertex[None].expand(B, -1, -1))
        lights = DirectionalLights(
            device=R.device,
            direction=light_model,
            ambient_color=((ambient,) * 3,),
            diffuse_color=((diffuse,) * 3,),
            specular_color=((specular,) * 3,),
        )
        materials = Materials(device=R.device, shininess=shininess)
        shader = HardPhongShader(
            device=R.device,
            cameras=cameras,
            lights=lights,
            materials=materials,
            blend_params=BlendParams(background_color=(0.0, 0.0, 0.0)),
        )
        rgba = shader(fragments, meshes)
        rgb = rgba[..., :3].clamp(0.0, 1.0).permute(0, 3, 1, 2).contiguous()
        mask = (fragments.pix_to_face[..., 0] >= 0).to(R.dtype)
        return Rendering(depth=self._zbuf(fragments), mask=mask, rgb=rgb)

    # -- internals ---------------------------------------------------------------------------------

    def _faces_of(self, objects: torch.Tensor | None, B: int) -> torch.Tensor | None:
        """``(B, F)`` bool: the faces each sample renders (None: all, one object)."""
        if self.num_objects == 1 and objects is None:
            return None
        if objects is None or objects.shape != (B,):
            raise ValueError(f"a renderer of {self.num_objects} objects needs objects (B,) = ({B},), got "
                             f"{None if objects is None else tuple(objects.shape)}")
        return self.face_object[None] == objects.to(self.device)[:, None]

    def _check(self, R, t, K, image_size):
        if R.ndim != 3 or R.shape[1:] != (3, 3):
            raise ValueError(f"R must be (B, 3, 3), got {tuple(R.shape)}")
        B = R.shape[0]
        if t.shape != (B, 3):
            raise ValueError(f"t must be (B, 3) = ({B}, 3), got {tuple(t.shape)}")
        if K.shape == (3, 3):
            K = K.expand(B, 3, 3)
        if K.shape != (B, 3, 3):
            raise ValueError(f"K must be (3, 3) or (B, 3, 3), got {tuple(K.shape)}")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"image_size must be S or (H, W), got {image_size}")
        dev = self.device
        return R.to(dev), t.to(dev), K.to(dev, R.dtype), (int(size[0]), int(size[1]))

    def _rasterize(self, R, t, K, size, faces_per_pixel: int, soft: bool = False, differentiable: bool = False,
                   face_mask: torch.Tensor | None = None):
        """Fragments ``(B, H, W, faces_per_pixel)`` plus the Meshes and cameras used; ``differentiable``
        asks for PyTorch3D's rasterizer (its backward), whatever ``settings.rasterizer`` says; ``face_mask (B, F)``:
        the faces each sample renders (None: all)."""
        B = R.shape[0]
        K_p3d = K.clone()
        K_p3d[:, :2, 2] += 0.5  # PyTorch3D: integer = pixel corner; ours: integer = pixel centre
        hw = torch.tensor(size, device=R.device, dtype=R.dtype).expand(B, 2)
        cameras = cameras_from_opencv_projection(R=R, tvec=t, camera_matrix=K_p3d, image_size=hw)
        faces = self.faces[None].expand(B, -1, -1)
        if face_mask is not None:  # the other objects' faces collapse to a point: never rasterized
            faces = torch.where(face_mask[..., None], faces, torch.zeros_like(faces))
        meshes = Meshes(verts=self.verts[None].expand(B, -1, -1), faces=faces)
        if not differentiable and self.settings.resolved_rasterizer(R.device, faces_per_pixel) == "torch":
            fragments = rasterize_nearest(self.verts, self.faces, R, t, K, size, cull_backfaces=self.orientation,
                                          face_mask=face_mask)
            return fragments, meshes, cameras
        blur = 0.0
        if soft:
            blur = math.log(1.0 / 1e-4 - 1.0) * self.settings.sigma
        raster = RasterizationSettings(
            image_size=size,
            blur_radius=blur,
            faces_per_pixel=faces_per_pixel,
            bin_size=None if R.device.type == "cuda" else 0,
            perspective_correct=True,
            cull_backfaces=False,
        )
        fragments = MeshRasterizer(cameras=cameras, raster_settings=raster)(meshes)
        return fragments, meshes, cameras

    @staticmethod
    def _zbuf(fragments: Fragments) -> torch.Tensor:
        z = fragments.zbuf[..., 0]
        return torch.where(fragments.pix_to_face[..., 0] >= 0, z, torch.zeros_like(z))

    def _depth_from_faces(
        self, p2f: torch.Tensor, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor
    ) -> torch.Tensor:
        """Differentiable depth of the visible face at every covered pixel.

        ``p2f (B, H, W)`` packed face index (-1 background). Returns ``(B, H, W)``.
        """
        B, H, W = p2f.shape
        F = self.faces.shape[0]
        cam = self.verts[None] @ R.transpose(1, 2) + t[:, None, :]  # (B, V, 3)
        z = cam[..., 2]
        uv = (cam @ K.transpose(1, 2))[..., :2] / z[..., None]  # (B, V, 2), integer = pixel centre
        b, i, j = torch.nonzero(p2f >= 0, as_tuple=True)
        face = self.faces[p2f[b, i, j] - b * F]  # (P, 3) vertex ids
        tri_uv = uv[b[:, None], face]  # (P, 3, 2)
        tri_z = z[b[:, None], face]  # (P, 3)
        px = torch.stack([j, i], dim=-1).to(uv.dtype)  # (P, 2) pixel centre (u = column, v = row)

        def edge(a, c, p):  # twice the signed area of (a, c, p)
            return (c[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (c[..., 1] - a[..., 1]) * (
                p[..., 0] - a[..., 0]
            )

        v0, v1, v2 = tri_uv[:, 0], tri_uv[:, 1], tri_uv[:, 2]
        area = edge(v0, v1, v2)
        area = torch.where(area.abs() < 1e-12, torch.full_like(area, 1e-12), area)
        bary = torch.stack([edge(v1, v2, px), edge(v2, v0, px), edge(v0, v1, px)], dim=-1) / area[:, None]
        depth_px = 1.0 / (bary / tri_z).sum(-1)
        depth = torch.zeros(B, H, W, device=R.device, dtype=R.dtype)
        return depth.index_put((b, i, j), depth_px)


class LossView(nn.Module):
    """The loss camera: the object at a fixed translation ``t`` seen by a square pinhole camera of
    vertical field of view ``fov_deg`` with ``image_size`` pixels (config ``[Rendering] T, FOV,
    IMAGE_SIZE``). ``forward(R (B,3,3)) -> Rendering`` with ``depth, mask (B, S, S)``. With a renderer of N
    objects, ``t`` is one translation per object (``(N, 3)``) and ``forward(R, objects (B,))`` renders each
    sample's object at its own translation, in one call."""

    t: torch.Tensor  # buffers (register_buffer in __init__)
    K: torch.Tensor

    def __init__(
        self, renderer: MeshRenderer, t: tuple[float, float, float] | Sequence[tuple[float, float, float]],
        fov_deg: float, image_size: int
    ) -> None:
        super().__init__()
        self.renderer = renderer
        self.image_size = int(image_size)
        self.fov_deg = float(fov_deg)
        self.register_buffer("t", torch.tensor(t, dtype=torch.float32), persistent=False)
        self.register_buffer("K", intrinsics_from_fov(fov_deg, image_size), persistent=False)

    def forward(self, R: torch.Tensor, objects: torch.Tensor | None = None) -> Rendering:
        B = R.shape[0]
        if self.t.ndim == 1:
            t = self.t.expand(B, 3)
        elif objects is None:
            raise ValueError(f"a loss view of {len(self.t)} objects needs objects (B,)")
        else:
            t = self.t[objects.to(self.t.device)]
        return self.renderer(R, t, self.K, self.image_size, objects)

    def with_mesh(
        self, mesh: Mesh, depth_gradient: Literal["auto", "torch", "pytorch3d"] | None = None
    ) -> LossView:
        """The same camera and render settings with another mesh (e.g. the full-resolution model, to
        measure the decimation or time the original's setting), on this view's device;
        ``depth_gradient`` replaces the settings' path when given."""
        settings = self.renderer.settings
        if depth_gradient is not None:
            settings = replace(settings, depth_gradient=depth_gradient)
        view = LossView(MeshRenderer(mesh, settings), tuple(self.t.tolist()), self.fov_deg, self.image_size)
        return view.to(self.t.device)
