"""AAE-style crops of the CAD model, rendered directly at the output size.

The Augmented Autoencoder (Sundermeyer et al., ECCV 2018) renders the object at ``t = [0, 0, RADIUS]``
with a base camera ``K`` (720x540 in its config), takes the tight 2D box of the rendered object, moves
it by a random offset of up to ``MAX_REL_OFFSET`` of its width/height, makes it square with side
``PAD_FACTOR * max(w, h)`` and resizes that window to the encoder's input (128x128).

Here the window is computed from the projected model vertices (the silhouette's bounding box is the
bounding box of the projected vertices), and the object is rendered **directly into the window**
with the crop's own intrinsics ``K_crop = A @ K``, where ``A`` maps the window to the ``S x S``
output. No large frame is rendered and nothing is resampled, so the crop is exact at any ``S`` and
costs only ``S^2`` pixels. Conventions (:mod:`multipose.core.geometry`): pixel centres at integer
coordinates, so pixel ``i`` covers ``[i - 0.5, i + 0.5]``; a window ``[u0, u0 + side]`` maps output
pixel ``j`` to ``u = u0 + (j + 0.5) side / S``, i.e. ``j = (u - u0) S / side - 0.5``.

The views are Phong-shaded (:meth:`multipose.core.render.MeshRenderer.render_rgb`: a uniformly grey-white
surface like T-LESS's, one directional light per view from a random direction on the camera's side),
on black, with their depth and silhouette.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from multipose.core.geometry import project_points
from multipose.core.mesh import Mesh
from multipose.core.render import MeshRenderer
from multipose.infra.records import TensorRecord

logger = logging.getLogger(__name__)

__all__ = [
    "SURFACE_COLOR",
    "ViewRenderer",
    "ViewSettings",
    "Views",
    "crop_intrinsics",
    "crop_square",
    "crop_windows",
    "random_light_directions",
    "tight_boxes",
]

#: Surface colour of the training renders (T-LESS objects are grey-white, untextured).
SURFACE_COLOR = (0.8, 0.8, 0.8)


@dataclass(frozen=True)
class ViewSettings:
    """Everything that decides how one view is rendered (and so keys the view cache).

    Attributes:
        size: output side ``S`` in pixels (``[Dataset] CROP_SIZE``).
        K: base camera intrinsics, 9 floats row-major (``[Dataset] K``).
        distance: camera distance in mm (``[Dataset] RADIUS``).
        pad_factor: window side over the object's larger box side (``[Dataset] PAD_FACTOR``).
        max_rel_offset: largest window offset relative to the box size (``[Training] MAX_REL_OFFSET``).
        color: surface RGB in ``[0, 1]``.
    """

    size: int = 128
    K: tuple[float, ...] = (1075.65, 0.0, 360.0, 0.0, 1073.9, 270.0, 0.0, 0.0, 1.0)
    distance: float = 700.0
    pad_factor: float = 1.2
    max_rel_offset: float = 0.2
    color: tuple[float, float, float] = SURFACE_COLOR

    def __post_init__(self) -> None:
        if self.size < 1 or self.distance <= 0 or self.pad_factor <= 0 or not 0 <= self.max_rel_offset < 1:
            raise ValueError(f"bad view settings {self}")
        if len(self.K) != 9:
            raise ValueError(f"K must hold 9 numbers, got {len(self.K)}")

    def K_tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The base intrinsics as ``(3, 3)`` float32."""
        return torch.tensor(self.K, dtype=torch.float32, device=device).reshape(3, 3)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Views(TensorRecord):
    """Rendered views, batch-first, all on one device.

    Attributes:
        rgb: ``(B, 3, S, S)`` uint8 Phong-shaded object on black.
        mask: ``(B, S, S)`` bool silhouette.
        depth: ``(B, S, S)`` float32 camera z in mm, 0 off the object.
        R: ``(B, 3, 3)``, t: ``(B, 3)``: the poses (OpenCV model-to-camera, mm).
        K: ``(B, 3, 3)`` the crops' intrinsics (integer pixel coordinates = pixel centres).
    """

    rgb: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    K: torch.Tensor


def tight_boxes(vertices: torch.Tensor, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Tight 2D boxes of the projected model: ``(V, 3), (B, 3, 3), (B, 3), (3, 3) -> (B, 4)``
    as ``[u_min, v_min, u_max, v_max]`` in pixel coordinates (integer = pixel centre)."""
    B = R.shape[0]
    uv, _ = project_points(vertices[None].expand(B, -1, -1), R, t, K.expand(B, 3, 3))
    return torch.cat([uv.amin(dim=1), uv.amax(dim=1)], dim=-1)


def crop_windows(boxes: torch.Tensor, offsets: torch.Tensor, pad_factor: float) -> torch.Tensor:
    """Square AAE crop windows: ``boxes (B, 4), offsets (B, 2) -> (B, 3)`` as ``[cx, cy, side]``.

    ``offsets`` are relative (the AAE draws each from ``U(-MAX_REL_OFFSET, MAX_REL_OFFSET)``): the
    window centre is the box centre plus ``offsets * [w, h]``; ``side = pad_factor * max(w, h)``.
    Like the box, the window is continuous: ``[cx - side/2, cx + side/2]`` in pixel-edge terms.
    """
    wh = boxes[:, 2:] - boxes[:, :2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + offsets * wh
    side = pad_factor * wh.amax(dim=1, keepdim=True)
    return torch.cat([centre, side], dim=-1)


def crop_intrinsics(K: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """Intrinsics that render a window at ``size x size``: ``(3, 3), (B, 3) -> (B, 3, 3)``.

    ``K_crop = A @ K`` with ``A = [[s, 0, -u0 s - 1/2], [0, s, -v0 s - 1/2], [0, 0, 1]]``,
    ``s = size / side`` and ``(u0, v0)`` the window's top-left corner (see the module docstring).
    """
    s = size / windows[:, 2]
    corner = windows[:, :2] - windows[:, 2:3] / 2
    A = torch.zeros(windows.shape[0], 3, 3, dtype=windows.dtype, device=windows.device)
    A[:, 0, 0] = s
    A[:, 1, 1] = s
    A[:, :2, 2] = -corner * s[:, None] - 0.5
    A[:, 2, 2] = 1.0
    return A @ K.to(windows)


def random_light_directions(n: int, generator: torch.Generator) -> torch.Tensor:
    """Directions towards the light in camera coordinates, on the camera's side of the object:
    ``() -> (n, 3)`` unit vectors with ``z <= -0.45`` (``[0, 0, -1]`` is a headlight). CPU."""
    d = torch.randn(n, 3, generator=generator)
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    d[:, 2] = -d[:, 2].abs() - 0.5
    return d / d.norm(dim=-1, keepdim=True)


class ViewRenderer:
    """Renders AAE crops of one mesh, batched, on the mesh renderer's device.

    Args:
        mesh: the data mesh (full resolution; vertices in mm).
        settings: crop geometry and surface.
        device: where rendering happens.
    """

    def __init__(self, mesh: Mesh, settings: ViewSettings, device: torch.device | str = "cpu") -> None:
        self.settings = settings
        self.device = torch.device(device)
        self.renderer = MeshRenderer(mesh).to(self.device)
        self.vertices = mesh.vertices.to(self.device)

    def windows(self, R: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``R (B, 3, 3), offsets (B, 2)`` (relative) -> ``t (B, 3)``, base-image windows ``(B, 3)``
        and crop intrinsics ``K (B, 3, 3)``, on the renderer's device."""
        st = self.settings
        R = R.to(self.device, torch.float32)
        t = torch.tensor([0.0, 0.0, st.distance], device=self.device).expand(R.shape[0], 3).contiguous()
        K = st.K_tensor(self.device)
        boxes = tight_boxes(self.vertices, R, t, K)
        windows = crop_windows(boxes, offsets.to(self.device, torch.float32), st.pad_factor)
        return t, windows, crop_intrinsics(K, windows, st.size)

    @torch.no_grad()
    def render(self, R: torch.Tensor, generator: torch.Generator) -> Views:
        """Render crops for rotations ``R (B, 3, 3)``: random offsets (``U(-m, m)`` per axis,
        ``m = max_rel_offset``) and light directions are drawn from ``generator`` (CPU), so a
        seeded generator gives the same views on any device. Returns :class:`Views` on the device."""
        return self.render_drawn(R, *self.draw(R.shape[0], generator))

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The random part of :meth:`render` for ``n`` views: offsets ``(n, 2)`` and light directions
        ``(n, 3)`` (CPU), drawn from ``generator`` in that order."""
        offsets = (torch.rand(n, 2, generator=generator) * 2.0 - 1.0) * self.settings.max_rel_offset
        return offsets, random_light_directions(n, generator)

    def render_drawn(self, R: torch.Tensor, offsets: torch.Tensor, light: torch.Tensor) -> Views:
        """:meth:`render` with its random part given (:meth:`draw`)."""
        st = self.settings
        R = R.to(self.device, torch.float32)
        t, _, K = self.windows(R, offsets)
        out = self.renderer.render_rgb(R, t, K, st.size, light_dir=light.to(self.device), color=st.color)
        assert out.rgb is not None  # render_rgb always shades
        rgb = (out.rgb * 255.0).round().to(torch.uint8)
        return Views(rgb=rgb, mask=out.mask > 0, depth=out.depth.float(), R=R, t=t, K=K)

    @torch.no_grad()
    def render_centred(self, R: torch.Tensor) -> torch.Tensor:
        """The AAE's clean image of a rotation: the window *without* offset, lit by a headlight
        (its ``random_light=False``): ``R (B, 3, 3) -> rgb (B, 3, S, S)`` uint8 on the device. It is
        the reconstruction target of encoder pretraining and the image a codebook entry encodes."""
        st = self.settings
        R = R.to(self.device, torch.float32)
        t, _, K = self.windows(R, torch.zeros(R.shape[0], 2, device=self.device))
        headlight = torch.tensor([0.0, 0.0, -1.0], device=self.device)
        out = self.renderer.render_rgb(R, t, K, st.size, light_dir=headlight, color=st.color)
        assert out.rgb is not None  # render_rgb always shades
        return (out.rgb * 255.0).round().to(torch.uint8)


def crop_square(
    image: np.ndarray, window: Sequence[float], size: int, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """Resample the square ``window = [cx, cy, side]`` of ``image (H, W)`` or ``(H, W, C)`` to
    ``(size, size[, C])``; outside the image is 0.

    Output pixel ``j`` samples the image at ``u`` with ``j = s (u - u0) - 0.5``, ``s = size / side``,
    ``u0 = cx - side / 2`` (pixel centres at integer coordinates) -- the same ``A`` as
    :func:`multipose.data.views.crop_intrinsics`, so a point at pixel ``K_crop x`` of the crop is at
    ``K x`` in the image.
    """
    cx, cy, side = (float(v) for v in window)
    s = size / side
    u0, v0 = cx - side / 2.0, cy - side / 2.0
    M = np.array([[s, 0.0, -s * u0 - 0.5], [0.0, s, -s * v0 - 0.5]], dtype=np.float64)
    return cv2.warpAffine(image, M, (size, size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
