"""Training rotations: ``[Training] VIEW_SAMPLING`` and hard-sample mining.

Rotations are OpenCV / BOP model-to-camera ``R (N, 3, 3)`` float32 (see :mod:`multipose.core.geometry`).
The methods are the original's (``DatasetGeneratorOpenGL``). Most of them built a PyTorch3D camera
rotation ``R_p3d`` with ``look_at_rotation`` (camera at a point of the view sphere looking at the model
origin, its up vector the model's +z, or -z for a camera below the equator), then turned it in-plane
by ``R_p3d @ Rz(U(-90, 90) degrees)``; the physical pose is ``diag(-1, -1, 1) @ R_p3d^T``
(:func:`multipose.core.geometry.opencv_from_pytorch3d_camera`). Base methods:

- ``sundermeyer-random``: uniform on SO(3) (the AAE's and the original's default; Shoemake's unit
  quaternions, here :func:`multipose.core.geometry.random_rotations`);
- ``quat``: uniform on SO(3) too, from a normalised Gaussian quaternion (the original's ``quat``);
- ``sphere``: viewpoints uniform on the sphere (``z ~ U(-1, 1)``, azimuth ``~ U(0, 2 pi)``), in-plane
  turn in [-90, 90]; ``sphere-simple``: no in-plane turn; ``sphere-fixed``: the original's
  ``look_at_rotation_fixed`` (a perturbed up vector for a camera on the up axis; otherwise the same);
- ``sphere-wolfram`` / ``sphere-wolfram-fixed``: the same distribution drawn with Marsaglia's method
  (MathWorld's sphere point picking);
- ``tless`` / ``tless-simple``: polar angle *uniform* in [0, 2 pi) (viewpoints crowd at the poles, as
  T-LESS's top and bottom views), with / without the in-plane turn;
- ``fixed`` (the original's debugging aid): cameras on the equator, in-plane turn in [-90, 90];
- ``viewsphere-aug``: the AAE codebook's grid (642 viewpoints x 36 in-plane angles) turned by one
  uniformly random rotation per draw (the original drew one per epoch), distinct grid entries;
  ``viewsphere-aug-no-conv``: 18 in-plane angles, the grid rotation used as a PyTorch3D camera
  rotation without conversion (as the original did);
- ``mixed``: ``sphere-wolfram-fixed`` or ``sundermeyer-random``, each with probability 1/2;
- a file of rotations: ``.npy`` ``[N, 3, 3]`` (OpenCV rotations), or an original-format pickle
  ``{"Rs": [...]}`` holding PyTorch3D camera rotations as the original's pickle sampling used them
  (converted with :func:`multipose.core.geometry.opencv_from_pytorch3d_camera`); samples are drawn from it
  uniformly with replacement.

The original's ``viewsphere`` read a file it did not distribute (``data/view-sphere.p``) and is
refused by the config (give that file as a rotation file instead).

Suffixes (as the original): ``-reuse`` draws from a fixed pool of :data:`REUSE_POOL_SIZE` rotations
drawn once; ``-hard`` re-uses hard samples: :meth:`PoseSampler.update` keeps the
``int(HARD_MINING_RATIO * B)`` worst samples of a batch (by their per-sample loss; 0.3 as the
original), and each later sample is one of them with probability ``HARD_SAMPLE_RATIO`` (0.2) while
any are left, each hard sample being re-used once. ``HARD_POOL: replace`` (the original's): the kept
samples replace the previous ones and the pool is emptied at the start of every epoch
(:meth:`PoseSampler.start_epoch`); ``accumulate``: they join the waiting ones (at most
:data:`HARD_POOL_CAPACITY`, oldest dropped first) and stay across epochs.

A sampler may draw from a *pool* of rotations (a rotation file, the ``-reuse`` pool, or the view
cache's rotations, see :mod:`multipose.data.cache`); its draws then carry pool indices so the
training data can look the rendered view up instead of rendering it again.

Every random choice uses the sampler's own :class:`torch.Generator`, so a stream replays exactly.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pytorch3d.renderer import look_at_rotation
from pytorch3d.transforms import quaternion_to_matrix

from multipose.core.geometry import (
    camera_rotation_from_sphere_point,
    icosphere_points,
    opencv_from_pytorch3d_camera,
    random_rotations,
    rotation_about_axis,
)
from multipose.core.settings import HARD_POOLS, ViewSampling
from multipose.data.io import PICKLE_SUFFIXES, load_rotations

logger = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "REUSE_POOL_SIZE",
    "PoseDraw",
    "PoseSampler",
    "base_rotations",
    "derive_seed",
    "load_view_sampling_file",
    "make_generator",
    "sphere_rotations",
    "sundermeyer_random",
    "viewsphere_grid",
]

#: Rotations drawn once for ``-reuse`` (the original's 20 * 1000).
REUSE_POOL_SIZE = 20_000
#: Most hard samples kept waiting for re-use with ``HARD_POOL: accumulate``; older ones are dropped first.
HARD_POOL_CAPACITY = 10_000


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one random stream (``purpose``, e.g. ``"training-data"``) from a config seed,
    so that streams with different purposes never coincide even when their config seeds do."""
    digest = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def make_generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded with :func:`derive_seed` ``(seed, purpose)``."""
    return torch.Generator().manual_seed(derive_seed(seed, purpose))


def sundermeyer_random(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` rotations uniform on SO(3): ``() -> (n, 3, 3)`` float32 (CPU)."""
    return random_rotations(n, generator=generator)


def _uniform(n: int, generator: torch.Generator, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _look_at(points: torch.Tensor, fixed: bool = False) -> torch.Tensor:
    """The original's PyTorch3D camera rotations for cameras at ``points (n, 3)`` looking at the origin,
    up = model +z, or -z for a camera below the equator: ``(n, 3, 3)`` float32. ``fixed``: its
    ``look_at_rotation_fixed``, which perturbs the up vector by 5e-3 where it is parallel to the view."""
    points = points.float()
    up = torch.zeros_like(points)
    up[:, 2] = torch.where(points[:, 2] < 0, -1.0, 1.0)
    if fixed:
        x_axis = F.normalize(torch.cross(up, F.normalize(-points, eps=1e-5), dim=1), eps=1e-5)
        degenerate = torch.isclose(x_axis, torch.tensor(0.0), atol=5e-3).all(dim=1, keepdim=True)
        up = torch.where(degenerate, up + 5e-3, up)
    return look_at_rotation(points, up=up)


def _inplane(R: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``R @ Rz(a)``, ``a ~ U(-90, 90)`` degrees, as the original turned its PyTorch3D rotations."""
    return R @ rotation_about_axis([0.0, 0.0, 1.0], _uniform(R.shape[0], generator, -90.0, 90.0))


def _from_viewpoints(points: torch.Tensor, generator: torch.Generator, simple: bool, fixed: bool) -> torch.Tensor:
    R = _look_at(points, fixed)
    return opencv_from_pytorch3d_camera(R if simple else _inplane(R, generator))


def sphere_rotations(n: int, generator: torch.Generator, *, simple: bool = False, fixed: bool = False) -> torch.Tensor:
    """The original's ``sphere`` sampling (module docstring): ``() -> (n, 3, 3)`` float32 (CPU)."""
    z = _uniform(n, generator, -1.0, 1.0)
    azimuth = _uniform(n, generator, 0.0, 2.0 * math.pi)
    r = (1.0 - z * z).clamp_min(0.0).sqrt()
    return _from_viewpoints(torch.stack([r * azimuth.cos(), r * azimuth.sin(), z], dim=1), generator, simple, fixed)


def _wolfram_points(n: int, generator: torch.Generator) -> torch.Tensor:
    """Marsaglia (1972): ``(x1, x2)`` uniform in the unit disc -> a uniform point of the sphere."""
    accepted: list[torch.Tensor] = []
    while sum(len(a) for a in accepted) < n:
        x = _uniform(2 * n, generator, -1.0, 1.0).reshape(n, 2)
        accepted.append(x[(x * x).sum(1) < 1.0])
    x1, x2 = torch.cat(accepted)[:n].unbind(1)
    s = x1 * x1 + x2 * x2
    root = (1.0 - s).sqrt()
    return torch.stack([2.0 * x1 * root, 2.0 * x2 * root, 1.0 - 2.0 * s], dim=1)


def _tless_points(n: int, generator: torch.Generator) -> torch.Tensor:
    theta, phi = _uniform(n, generator, 0.0, 2.0 * math.pi), _uniform(n, generator, 0.0, 2.0 * math.pi)
    return torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], dim=1)


def _equator_points(n: int, generator: torch.Generator) -> torch.Tensor:
    azimuth = _uniform(n, generator, 0.0, 2.0 * math.pi)
    return torch.stack([azimuth.cos(), azimuth.sin(), torch.full_like(azimuth, -1e-5)], dim=1)


def viewsphere_grid(num_views: int = 600, num_inplane: int = 36) -> torch.Tensor:
    """The original's ``viewsphere_for_embedding``: the AAE's viewpoints (the smallest refined
    icosahedron with at least ``num_views`` vertices: 642 for 600), each rolled by the in-plane angles
    ``-linspace(0, 360, num_inplane)`` degrees (both ends included, as it did): ``(V * num_inplane, 3, 3)``."""
    points = torch.from_numpy(icosphere_points(num_views))
    angles = -torch.linspace(0.0, 360.0, num_inplane, dtype=torch.float64)
    R = camera_rotation_from_sphere_point(points.repeat_interleave(num_inplane, dim=0), angles.repeat(points.shape[0]))
    return R.float()


def _viewsphere_aug(n: int, generator: torch.Generator, num_inplane: int, convert: bool) -> torch.Tensor:
    grid = viewsphere_grid(600, num_inplane)
    if n <= grid.shape[0]:
        index = torch.randperm(grid.shape[0], generator=generator)[:n]
    else:
        index = torch.randint(0, grid.shape[0], (n,), generator=generator)
    R = grid[index] @ random_rotations(1, generator=generator)
    return R if convert else opencv_from_pytorch3d_camera(R)


def _mixed(n: int, generator: torch.Generator) -> torch.Tensor:
    coin = torch.rand(n, generator=generator) < 0.5
    wolfram = _from_viewpoints(_wolfram_points(n, generator), generator, simple=False, fixed=True)
    return torch.where(coin[:, None, None], wolfram, sundermeyer_random(n, generator))


def _quat(n: int, generator: torch.Generator) -> torch.Tensor:
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    return opencv_from_pytorch3d_camera(quaternion_to_matrix(q / q.norm(dim=1, keepdim=True))).float()


#: ``VIEW_SAMPLING`` method -> ``f(n, generator) -> (n, 3, 3)`` OpenCV rotations (module docstring).
METHODS: dict[str, Callable[[int, torch.Generator], torch.Tensor]] = {
    "sundermeyer-random": sundermeyer_random,
    "sphere": sphere_rotations,
    "sphere-simple": lambda n, g: sphere_rotations(n, g, simple=True),
    "sphere-fixed": lambda n, g: sphere_rotations(n, g, fixed=True),
    "sphere-wolfram": lambda n, g: _from_viewpoints(_wolfram_points(n, g), g, simple=False, fixed=False),
    "sphere-wolfram-fixed": lambda n, g: _from_viewpoints(_wolfram_points(n, g), g, simple=False, fixed=True),
    "tless": lambda n, g: _from_viewpoints(_tless_points(n, g), g, simple=False, fixed=False),
    "tless-simple": lambda n, g: _from_viewpoints(_tless_points(n, g), g, simple=True, fixed=False),
    "fixed": lambda n, g: _from_viewpoints(_equator_points(n, g), g, simple=False, fixed=False),
    "viewsphere-aug": lambda n, g: _viewsphere_aug(n, g, 36, convert=True),
    "viewsphere-aug-no-conv": lambda n, g: _viewsphere_aug(n, g, 18, convert=False),
    "mixed": _mixed,
    "quat": _quat,
}


def load_view_sampling_file(path: str) -> torch.Tensor:
    """The rotations of a ``VIEW_SAMPLING`` file as OpenCV poses ``(N, 3, 3)``: a ``.npy`` as it is, an
    original-format pickle converted from the PyTorch3D camera rotations it holds."""
    R = load_rotations(path)
    return opencv_from_pytorch3d_camera(R) if path.lower().endswith(PICKLE_SUFFIXES) else R


def base_rotations(
    spec: ViewSampling, n: int, generator: torch.Generator, file_rotations: torch.Tensor | None = None
) -> torch.Tensor:
    """``n`` rotations of a base method, ignoring the ``-hard``/``-reuse`` suffixes: ``(n, 3, 3)``.

    For a rotation file (``file_rotations (M, 3, 3)``, read with
    :func:`load_view_sampling_file` when not given): all of them in file order when
    ``n >= M`` (so the result may be shorter than ``n``), else ``n`` distinct ones drawn at random.
    """
    if not spec.is_file:
        return METHODS[spec.base](n, generator).float()
    if file_rotations is None:
        file_rotations = load_view_sampling_file(spec.base)
    if n >= file_rotations.shape[0]:
        return file_rotations.clone()
    pick = torch.randperm(file_rotations.shape[0], generator=generator)[:n]
    return file_rotations[pick.sort().values].clone()


@dataclass(frozen=True)
class PoseDraw:
    """Rotations drawn by a :class:`PoseSampler`.

    Attributes:
        R: ``(n, 3, 3)`` float32, OpenCV model-to-camera.
        index: ``(n,)`` int64 position of each rotation in the sampler's pool, -1 where the
            rotation was drawn fresh (no pool).
    """

    R: torch.Tensor
    index: torch.Tensor


class PoseSampler:
    """Draws training rotations for ``[Training] VIEW_SAMPLING``; see the module docstring.

    Args:
        spec: the parsed method (:func:`multipose.config.view_sampling`).
        generator: the CPU generator every random choice uses.
        pool: ``(P, 3, 3)`` rotations to draw from (e.g. the view cache's); then the draws carry
            indices into it and ``-reuse`` is implied. Without it a rotation file or ``-reuse``
            makes the pool, else every rotation is fresh.
        hard_mining_ratio: fraction of a batch kept by :meth:`update` with ``-hard`` (rounded down).
        hard_sample_ratio: probability that a drawn sample is a kept hard one.
        hard_pool: ``"replace"`` or ``"accumulate"`` (module docstring).
        reuse_pool_size: pool size for ``-reuse`` without ``pool``.
    """

    def __init__(
        self,
        spec: ViewSampling,
        generator: torch.Generator,
        *,
        pool: torch.Tensor | None = None,
        hard_mining_ratio: float = 0.3,
        hard_sample_ratio: float = 0.2,
        hard_pool: str = "replace",
        reuse_pool_size: int = REUSE_POOL_SIZE,
    ) -> None:
        if hard_pool not in HARD_POOLS:
            raise ValueError(f"hard_pool must be one of {HARD_POOLS}, got {hard_pool!r}")
        if not 0.0 <= hard_mining_ratio <= 1.0 or not 0.0 <= hard_sample_ratio <= 1.0:
            raise ValueError(
                f"hard_mining_ratio and hard_sample_ratio must be in [0, 1], got "
                f"{hard_mining_ratio}, {hard_sample_ratio}"
            )
        self.spec = spec
        self.generator = generator
        self.hard_mining_ratio = float(hard_mining_ratio)
        self.hard_sample_ratio = float(hard_sample_ratio)
        self.hard_pool = hard_pool
        if pool is None and spec.is_file:
            pool = load_view_sampling_file(spec.base)
        elif pool is None and spec.reuse:
            pool = base_rotations(spec, reuse_pool_size, generator)
        if pool is not None and (pool.ndim != 3 or pool.shape[1:] != (3, 3) or pool.shape[0] == 0):
            raise ValueError(f"pool must be (P, 3, 3) with P >= 1, got {tuple(pool.shape)}")
        self.pool = None if pool is None else pool.detach().float().cpu()
        self._hard_R = torch.empty(0, 3, 3)
        self._hard_index = torch.empty(0, dtype=torch.long)

    @property
    def num_hard(self) -> int:
        """Hard samples waiting to be re-used."""
        return int(self._hard_index.shape[0])

    def sample(self, n: int) -> PoseDraw:
        """``n`` rotations: ``() -> PoseDraw(R (n, 3, 3), index (n,))`` on the CPU."""
        if self.pool is not None:
            index = torch.randint(0, self.pool.shape[0], (n,), generator=self.generator)
            R = self.pool[index]
        else:
            R = base_rotations(self.spec, n, self.generator)
            index = torch.full((n,), -1, dtype=torch.long)
        if self.spec.hard and self.num_hard:
            take = torch.rand(n, generator=self.generator) < self.hard_sample_ratio
            slots = torch.nonzero(take).flatten()[: self.num_hard]
            order = torch.randperm(self.num_hard, generator=self.generator)
            used, kept = order[: slots.numel()], order[slots.numel():].sort().values
            R, index = R.clone(), index.clone()
            R[slots], index[slots] = self._hard_R[used], self._hard_index[used]
            self._hard_R, self._hard_index = self._hard_R[kept], self._hard_index[kept]
        return PoseDraw(R=R, index=index)

    def update(
        self, R: torch.Tensor, per_sample_loss: torch.Tensor, index: torch.Tensor | None = None
    ) -> None:
        """Report a batch's losses: ``R (B, 3, 3), per_sample_loss (B,), index (B,)`` (pool indices
        from :class:`PoseDraw`, or None). With ``-hard`` the worst ``int(ratio * B)`` samples are
        kept for re-use (replacing or joining the waiting ones, per ``hard_pool``); otherwise this
        does nothing."""
        if not self.spec.hard:
            return
        if R.ndim != 3 or R.shape[1:] != (3, 3) or per_sample_loss.shape != (R.shape[0],):
            raise ValueError(
                f"expected R (B, 3, 3) and per_sample_loss (B,), got {tuple(R.shape)} and "
                f"{tuple(per_sample_loss.shape)}"
            )
        if index is None:
            index = torch.full((R.shape[0],), -1, dtype=torch.long)
        k = min(R.shape[0], int(self.hard_mining_ratio * R.shape[0]))
        worst = per_sample_loss.detach().float().cpu().topk(k).indices
        hard_R, hard_index = R.detach().float().cpu()[worst], index.detach().long().cpu()[worst]
        if self.hard_pool == "accumulate":
            hard_R, hard_index = torch.cat([self._hard_R, hard_R]), torch.cat([self._hard_index, hard_index])
        self._hard_R, self._hard_index = hard_R[-HARD_POOL_CAPACITY:], hard_index[-HARD_POOL_CAPACITY:]

    def start_epoch(self) -> None:
        """Called before every epoch's first batch: ``HARD_POOL: replace`` empties the hard pool (the
        original reset it every epoch); ``accumulate`` keeps it."""
        if self.hard_pool == "replace":
            self._hard_R, self._hard_index = self._hard_R[:0], self._hard_index[:0]

    def state_dict(self) -> dict[str, Any]:
        """Generator state and waiting hard samples (the pool is rebuilt from the config)."""
        return {
            "generator": self.generator.get_state(),
            "hard_R": self._hard_R.clone(),
            "hard_index": self._hard_index.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._hard_R = state["hard_R"].clone()
        self._hard_index = state["hard_index"].clone()
