"""Training rotations: ``[Training] VIEW_SAMPLING`` and hard-sample mining.

Rotations are OpenCV / BOP model-to-camera ``R (N, 3, 3)`` float32 (see :mod:`multipose.geometry`).
Base methods:

- ``sundermeyer-random``: uniform on SO(3) (the AAE's and the original's default; Shoemake's unit
  quaternions, here :func:`multipose.geometry.random_rotations`);
- ``sphere``: a camera at a uniformly random point of the view sphere looking at the model origin,
  model +z up in the image, then rolled by a uniform in-plane angle in [-90, 90] degrees
  (the original's ``sphere`` sampling; :func:`multipose.geometry.camera_rotation_from_sphere_point`);
- a file of rotations (``.npy`` ``[N, 3, 3]`` or an original-format pickle ``{"Rs": [...]}``, read as
  OpenCV rotations): samples are drawn from it uniformly with replacement.

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
from dataclasses import dataclass
from typing import Any

import torch

from multipose.config import Config, ViewSampling, view_sampling
from multipose.data.io import load_rotations
from multipose.geometry import camera_rotation_from_sphere_point, random_rotations

logger = logging.getLogger(__name__)

__all__ = [
    "REUSE_POOL_SIZE",
    "PoseDraw",
    "PoseSampler",
    "base_rotations",
    "derive_seed",
    "make_generator",
    "pose_sampler_from_config",
    "sphere_rotations",
    "sundermeyer_random",
]

#: Rotations drawn once for ``-reuse`` (the original's 20 * 1000).
REUSE_POOL_SIZE = 20_000
#: Most hard samples kept waiting for re-use with ``HARD_POOL: accumulate``; older ones are dropped first.
HARD_POOL_CAPACITY = 10_000
#: ``[Training] HARD_POOL`` policies (see the module docstring).
HARD_POOLS = ("replace", "accumulate")


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


def sphere_rotations(n: int, generator: torch.Generator, inplane_max_deg: float = 90.0) -> torch.Tensor:
    """The original's ``sphere`` sampling: ``() -> (n, 3, 3)`` float32 (CPU).

    Viewpoints uniform on the sphere (``z ~ U(-1, 1)``, azimuth ``~ U(0, 2 pi)``: Archimedes), the
    camera looking at the origin with the model's +z axis up in the image, rolled about the optical
    axis by ``U(-inplane_max_deg, inplane_max_deg)`` degrees.
    """
    u = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    z = 2.0 * u[:, 0] - 1.0
    phi = 2.0 * math.pi * u[:, 1]
    r = (1.0 - z * z).clamp_min(0.0).sqrt()
    points = torch.stack([r * phi.cos(), r * phi.sin(), z], dim=-1)
    inplane = (2.0 * u[:, 2] - 1.0) * inplane_max_deg
    return camera_rotation_from_sphere_point(points, inplane).float()


def base_rotations(
    spec: ViewSampling, n: int, generator: torch.Generator, file_rotations: torch.Tensor | None = None
) -> torch.Tensor:
    """``n`` rotations of a base method, ignoring the ``-hard``/``-reuse`` suffixes: ``(n, 3, 3)``.

    For a rotation file (``file_rotations (M, 3, 3)``, read with
    :func:`multipose.data.io.load_rotations` when not given): all of them in file order when
    ``n >= M`` (so the result may be shorter than ``n``), else ``n`` distinct ones drawn at random.
    """
    if spec.base == "sundermeyer-random":
        return sundermeyer_random(n, generator)
    if spec.base == "sphere":
        return sphere_rotations(n, generator)
    if file_rotations is None:
        file_rotations = load_rotations(spec.base)
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
        if pool is None and spec.base not in ("sundermeyer-random", "sphere"):
            pool = load_rotations(spec.base)
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


def pose_sampler_from_config(
    cfg: Config, generator: torch.Generator, pool: torch.Tensor | None = None
) -> PoseSampler:
    """The sampler of ``[Training] VIEW_SAMPLING, HARD_MINING_RATIO, HARD_SAMPLE_RATIO, HARD_POOL``."""
    return PoseSampler(
        view_sampling(cfg),
        generator,
        pool=pool,
        hard_mining_ratio=cfg.Training.HARD_MINING_RATIO,
        hard_sample_ratio=cfg.Training.HARD_SAMPLE_RATIO,
        hard_pool=cfg.Training.HARD_POOL,
    )
