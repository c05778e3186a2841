"""The view cache: clean training views rendered once per (mesh content, settings), reused after.

Rendering is the expensive part of the synthetic data (PyTorch3D's CPU rasterizer costs ~pixels x
faces); compositing and augmenting are cheap. So, as the AAE did with its ``NOOF_TRAINING_IMGS``
pre-rendered views, a pool of ``[Dataset] NOOF_TRAINING_IMGS`` clean views (object on black, with
mask, depth, pose and crop intrinsics) is rendered once, with a progress bar, and stored as
``CACHE_DIR/views/<mesh>-<S>px-<N>-<key>.npz``. Every later epoch and run with the same settings
loads it; backgrounds and augmentation are applied on the fly.

The key is a sha256 over the mesh file's *content*, every setting that changes the renders
(:class:`multipose.data.views.ViewSettings`, ``NORMALIZE_VERTICES``, the base of ``VIEW_SAMPLING``
and a rotation file's content, ``NOOF_TRAINING_IMGS``, ``VIEW_SEED``) and :data:`CACHE_VERSION`, so
editing the mesh or a setting renders a new cache and deleting ``CACHE_DIR/views`` is always safe.
Writes are atomic; a corrupt or mismatching file is logged and rebuilt.

File arrays: ``rgb`` uint8 ``[N, 3, S, S]``, ``mask`` bit-packed ``[N, S, ceil(S/8)]``, ``depth``
float16 ``[N, S, S]`` holding ``z - RADIUS`` in mm on the object (0 elsewhere; float16 keeps
~0.1 mm at the object's size), ``R``, ``t``, ``K`` float32, ``key`` and ``settings`` (JSON).

Encoder pretraining also needs each view's reconstruction target, the AAE's clean image of the same
rotation (centred window, headlight: :meth:`~multipose.data.views.ViewRenderer.render_centred`). It is
rendered only when asked for (``targets=True``) into a companion file ``<same name>-targets.npz``
(``key``, ``rgb`` uint8 ``[N, 3, S, S]``), so pose-head training never pays for it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch

from multipose.core.mesh import Mesh, load_mesh, normalization_key
from multipose.core.settings import ViewSampling
from multipose.data.sampling import base_rotations, load_view_sampling_file, make_generator
from multipose.data.views import ViewRenderer, Views, ViewSettings
from multipose.infra.atomic import atomic_open
from multipose.infra.content_key import content_key, file_sha256
from multipose.infra.distributed import Dist
from multipose.infra.errors import DataError
from multipose.infra.progress import progress_bar

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["CACHE_VERSION", "ViewCache", "build_view_cache", "render_views",
           "view_cache_key"]

#: Bump when the rendering code changes what a cached view holds.
CACHE_VERSION = 2  # 2: the original's sphere sampling (up vector flipped below the equator), .p files converted


@dataclass(frozen=True, eq=False)
class ViewCache:
    """A pool of clean views in memory (on one device).

    Attributes:
        views: the :class:`~multipose.data.views.Views` of all ``N`` entries; ``views.depth`` is
            float32 mm.
        key: the cache key (hex sha256).
        path: the file it was loaded from or written to (None when not stored).
        targets: ``(N, 3, S, S)`` uint8 reconstruction targets (centred, headlit renders of the same
            rotations), or None when not asked for.
    """

    views: Views
    key: str
    path: Path | None = None
    targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.views)

    @property
    def R(self) -> torch.Tensor:
        """``(N, 3, 3)`` rotations of the pool."""
        return self.views.R

    def take(self, index: torch.Tensor) -> Views:
        """Views at ``index (n,)`` (pool positions)."""
        return self.views.take(index)

    def to(self, device: torch.device | str) -> ViewCache:
        targets = self.targets.to(device) if self.targets is not None else None
        return ViewCache(self.views.to(device), self.key, self.path, targets)


def render_views(
    renderer: ViewRenderer,
    R: torch.Tensor,
    generator: torch.Generator,
    batch_size: int = 32,
    progress: bool = True,
    desc: str = "rendering views",
    dist: Dist | None = None,
    everywhere: bool = False,
) -> Views | None:
    """Render crops of ``R (N, 3, 3)`` in batches with a tqdm bar; :class:`Views` on the renderer's
    device. Offsets and lights come from ``generator`` in batch order (reproducible). ``dist``: every
    rank draws them all and renders its share of the batches (:meth:`~multipose.infra.distributed.Dist.batches`);
    rank 0 gets all the views (on the CPU), the others None, or with ``everywhere`` every rank gets them."""
    dist = dist or Dist()
    drawn = [renderer.draw(min(batch_size, R.shape[0] - s), generator) for s in range(0, R.shape[0], batch_size)]
    mine = dist.batches(R.shape[0], batch_size)
    first = mine[0].start // batch_size if mine else 0
    parts = []
    with progress_bar(total=sum(s.stop - s.start for s in mine), desc=desc, unit="view", disable=not progress,
                      leave=False) as bar:
        for b, rows in enumerate(mine, start=first):
            parts.append(renderer.render_drawn(R[rows], *drawn[b]))
            bar.update(parts[-1].R.shape[0])
    if not dist.enabled:
        return Views.cat(parts)
    parts = [p.to("cpu") for p in parts]
    gathered = dist.all_gather_list(parts) if everywhere else dist.gather_list(parts)
    return Views.cat(gathered) if gathered is not None else None


def view_cache_key(
    mesh_sha256: str,
    settings: ViewSettings,
    normalize: bool,
    sampling_base: str,
    sampling_file_sha256: str | None,
    num_views: int,
    seed: int,
) -> tuple[str, dict[str, Any]]:
    """(hex sha256 key, the JSON-able dict it hashes) of a view cache."""
    described = {
        "version": CACHE_VERSION,
        "mesh_sha256": mesh_sha256,
        "normalize": normalization_key(normalize),
        "view": settings.as_dict(),
        "sampling": sampling_file_sha256 if sampling_file_sha256 else sampling_base,
        "num_views": int(num_views),
        "seed": int(seed),
    }
    return content_key(described), described


def _encode(views: Views, distance: float) -> dict[str, np.ndarray]:
    mask = views.mask.cpu().numpy()
    depth = torch.where(views.mask, views.depth - distance, torch.zeros_like(views.depth))
    return {
        "rgb": views.rgb.cpu().numpy(),
        "mask": np.packbits(mask, axis=-1),
        "depth": depth.cpu().numpy().astype(np.float16),
        "R": views.R.cpu().numpy().astype(np.float32),
        "t": views.t.cpu().numpy().astype(np.float32),
        "K": views.K.cpu().numpy().astype(np.float32),
    }


def _read_npz(path: Path, key: str, what: str, read: Callable[[Any], T]) -> T | None:
    """``read(npz)`` of a cache file whose ``key`` matches, or None (logged) when the file is absent,
    corrupt, of other settings, or ``read`` finds it malformed (ValueError/KeyError)."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                raise ValueError("its key does not match the settings")
            return read(npz)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        logger.warning("%s %s is unusable (%s); rendering it again", what, path, str(exc)[:200])
        return None


def _read(path: Path, key: str, size: int, num: int, distance: float) -> Views | None:
    """The cached views, or None (logged) when the file is absent, corrupt or of other settings."""

    def read(npz: Any) -> Views:
        rgb = np.asarray(npz["rgb"])
        mask = np.unpackbits(np.asarray(npz["mask"]), axis=-1, count=size).astype(bool)
        depth_rel = np.asarray(npz["depth"]).astype(np.float32)
        R, t, K = (np.asarray(npz[k]).astype(np.float32) for k in ("R", "t", "K"))
        n = rgb.shape[0]
        shapes = {
            "rgb": (rgb.shape, (n, 3, size, size)), "mask": (mask.shape, (n, size, size)),
            "depth": (depth_rel.shape, (n, size, size)), "R": (R.shape, (n, 3, 3)),
            "t": (t.shape, (n, 3)), "K": (K.shape, (n, 3, 3)),
        }
        for name, (got, want) in shapes.items():
            if tuple(got) != want:
                raise ValueError(f"{name} has shape {tuple(got)}, expected {want}")
        if rgb.dtype != np.uint8 or n == 0 or n > num:
            raise ValueError(f"rgb is {rgb.dtype} with {n} views")
        if not (np.isfinite(depth_rel).all() and np.isfinite(R).all() and np.isfinite(K).all()):
            raise ValueError("non-finite values")
        mask_t = torch.from_numpy(mask)
        depth = torch.where(mask_t, torch.from_numpy(depth_rel) + distance, torch.zeros(()))
        return Views(rgb=torch.from_numpy(rgb), mask=mask_t, depth=depth, R=torch.from_numpy(R),
                     t=torch.from_numpy(t), K=torch.from_numpy(K))

    return _read_npz(path, key, "view cache", read)


def _read_targets(path: Path, key: str, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The cached targets, or None (logged) when absent, corrupt or of other settings."""

    def read(npz: Any) -> torch.Tensor:
        rgb = np.asarray(npz["rgb"])
        if rgb.dtype != np.uint8 or tuple(rgb.shape) != shape:
            raise ValueError(f"rgb is {rgb.dtype} {tuple(rgb.shape)}, expected uint8 {shape}")
        return torch.from_numpy(rgb)

    return _read_npz(path, key, "target cache", read)


def _targets(
    renderer: Callable[[], ViewRenderer], views: Views, path: Path, key: str, batch_size: int, progress: bool,
    dist: Dist,
) -> torch.Tensor:
    """The reconstruction targets of ``views`` from ``path``, or rendered (with ``renderer()``, made
    only then; each rank renders its share, all get them all) and stored there by rank 0 (CPU)."""
    shape = tuple(views.rgb.shape)
    cached = _read_targets(path, key, shape)  # the same file on every rank: all read it, or all render
    if cached is not None:
        return cached
    render_centred = renderer().render_centred
    mine = dist.batches(views.R.shape[0], batch_size)
    parts = []
    with progress_bar(total=sum(s.stop - s.start for s in mine), desc="rendering reconstruction targets",
                      unit="view", disable=not progress, leave=False) as bar:
        for rows in mine:
            parts.append(render_centred(views.R[rows]).cpu())
            bar.update(parts[-1].shape[0])
    targets = torch.cat(dist.all_gather_list(parts))
    if dist.is_main:
        with atomic_open(path) as f:
            np.savez(f, key=np.array(key), rgb=targets.numpy())
        logger.info("view cache: rendered %d reconstruction targets; wrote %s", len(targets), path)
    return targets


def build_view_cache(
    mesh_path: str | os.PathLike,
    settings: ViewSettings,
    num_views: int,
    cache_dir: str | os.PathLike,
    *,
    normalize: bool = False,
    sampling: str = "sundermeyer-random",
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    progress: bool = True,
    targets: bool = False,
    dist: Dist | None = None,
) -> ViewCache:
    """Load the view cache of these settings, or render and store it. In a distributed run (``dist``) every
    rank calls it: each renders its share of the views (and of the targets), rank 0 writes the files, the
    others then read the view file.

    Args:
        mesh_path: the data mesh (PLY/OBJ, mm), rendered at full resolution.
        settings: crop geometry (:func:`multipose.experiment.factories.view_settings`).
        num_views: pool size (a rotation file with fewer rotations gives all of them).
        cache_dir: ``[Dataset] CACHE_DIR``; the file goes to ``cache_dir/views/``.
        normalize: ``[Rendering] NORMALIZE_VERTICES``.
        sampling: the base of ``VIEW_SAMPLING`` (``sundermeyer-random``, ``sphere`` or a rotation
            file path); suffixes are ignored here (they act when drawing from the pool).
        seed: ``[Dataset] VIEW_SEED`` (poses, offsets, lights).
        device: where to render and where the returned cache lives.
        batch_size: views rendered per rasterizer call.
        progress: show a tqdm bar while rendering.
        targets: also load (or render and store) the reconstruction targets of encoder pretraining.

    Returns:
        :class:`ViewCache` on ``device``.
    """
    dist = dist or Dist()
    mesh_path = Path(mesh_path)
    mesh = load_mesh(mesh_path, normalize=normalize)  # validates the file (MeshError) before hashing
    spec = ViewSampling(sampling)
    file_rotations = load_view_sampling_file(sampling) if spec.is_file else None
    file_sha = file_sha256(sampling) if spec.is_file else None
    key, described = view_cache_key(
        file_sha256(mesh_path), settings, normalize, sampling, file_sha, num_views, seed
    )
    path = Path(cache_dir) / "views" / f"{mesh_path.stem}-{settings.size}px-{num_views}-{key[:16]}.npz"
    cached = _read(path, key, settings.size, num_views, settings.distance)
    if cached is not None:
        logger.info("view cache: %d views of %s (cache hit: %s)", len(cached), mesh_path.name, path)
        return _with_targets(cached, key, path, targets, lambda: ViewRenderer(mesh, settings, device), batch_size,
                             progress, dist, device)

    renderer = ViewRenderer(mesh, settings, device)
    generator = make_generator(seed, "view-cache")
    R = base_rotations(spec, num_views, generator, file_rotations=file_rotations)
    views = _render_stored(renderer, mesh, mesh_path.name, R, generator, path, key, described, batch_size, progress,
                           dist)
    return _with_targets(views, key, path, targets, lambda: renderer, batch_size, progress, dist, device)


def _render_stored(renderer: ViewRenderer, mesh: Mesh, name: str, R: torch.Tensor, generator: torch.Generator,
                   path: Path, key: str, described: dict[str, Any], batch_size: int, progress: bool,
                   dist: Dist) -> Views:
    """Render the views of ``R (N, 3, 3)`` (each rank its share), write them to ``path`` (rank 0) and read the
    file back: what a later run loads (float16 depth), so a fresh cache and a loaded one are identical. ``mesh``,
    ``name``: the rendered mesh and its file name, for the log."""
    settings = renderer.settings
    start = time.perf_counter()
    rendered = render_views(renderer, R, generator, batch_size=batch_size, progress=progress,
                            desc=f"rendering view cache ({name})", dist=dist)
    if rendered is not None:  # rank 0 (or the only process) writes
        _store(path, key, described, rendered, settings.distance)
        seconds = time.perf_counter() - start
        logger.info(
            "view cache: rendered %d views of %s (%d faces, %d px) in %.1f s (%.1f views/s, %d process(es)); "
            "wrote %s", len(rendered), name, mesh.num_faces, settings.size, seconds,
            len(rendered) / max(seconds, 1e-9), dist.world_size, path,
        )
    dist.barrier()  # the file is written
    views = _read(path, key, settings.size, len(R), settings.distance)
    if views is None and rendered is None:
        raise DataError(f"{path}: the view cache rank 0 wrote cannot be read back")
    views = views if views is not None else rendered
    assert views is not None
    return views


def _with_targets(
    views: Views, key: str, path: Path, targets: bool, renderer: Callable[[], ViewRenderer], batch_size: int,
    progress: bool, dist: Dist, device: torch.device | str,
) -> ViewCache:
    """The :class:`ViewCache` of ``views`` (the file ``path``) on ``device``, with its reconstruction targets
    when ``targets`` (each rank renders its share of them)."""
    target_rgb = None
    if targets:
        target_rgb = _targets(renderer, views, path.with_name(f"{path.stem}-targets.npz"), key, batch_size,
                              progress, dist)
    return ViewCache(views, key, path, target_rgb).to(device)


def _store(path: Path, key: str, described: dict[str, Any], views: Views, distance: float) -> None:
    """Write a view cache file atomically."""
    with atomic_open(path) as f:
        # Any: mypy checks the ** against savez's allow_pickle: bool too; _encode's keys are array names.
        np.savez(f, key=np.array(key), settings=np.array(json.dumps(described)),
                 **cast(dict[str, Any], _encode(views, distance)))
