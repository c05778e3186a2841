"""Factories: the core's objects from an experiment config (the ``*_from_config`` functions shared by the
assembly modules; :mod:`~multipose.experiment.datasets`, :mod:`~multipose.experiment.encoders` and
:mod:`~multipose.experiment.testsets` hold the larger ones). The core, data and model layers take
plain arguments and settings dataclasses (:mod:`multipose.core.settings`, :class:`~multipose.data.views.ViewSettings`,
:class:`~multipose.data.augment.AugmentSettings`, ...).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Literal

import torch

from multipose.config import Config, crop_size, loss_parameters, render_distance, view_sampling
from multipose.core.geometry import distance_for_fill, euler_views
from multipose.core.losses import MultiPoseLoss
from multipose.core.mesh import Mesh, load_loss_mesh, load_mesh
from multipose.core.render import LossView, MeshRenderer, RenderSettings
from multipose.data.augment import AugmentSettings
from multipose.data.backgrounds import BackgroundSource, ImageBackgrounds, ProceduralBackgrounds, load_background_images
from multipose.data.cache import ViewCache, build_view_cache
from multipose.data.occlusion import OcclusionSettings
from multipose.data.sampling import PoseSampler
from multipose.data.views import ViewSettings
from multipose.experiment.objects import object_configs
from multipose.infra.distributed import Dist


def load_data_mesh(cfg: Config) -> Mesh:
    """The CAD model of a config's training renders, as the renders see it: ``[Dataset] MODEL_PATH_DATA``
    normalised by ``[Rendering] NORMALIZE_VERTICES`` (:func:`load_mesh`)."""
    return load_mesh(cfg.Dataset.MODEL_PATH_DATA, normalize=cfg.Rendering.NORMALIZE_VERTICES)


def loss_translation(cfg: Config, radius: float) -> tuple[float, float, float]:
    """``[Rendering] T`` in mm, or with ``T: auto`` ``[0, 0, d]`` where a model of bounding
    ``radius`` fills ``T_FILL`` of the loss view (:func:`multipose.core.geometry.distance_for_fill`)."""
    r = cfg.Rendering
    if r.T is not None:
        x, y, z = r.T  # the config's T is a triple (TranslationType)
        return (float(x), float(y), float(z))
    return (0.0, 0.0, distance_for_fill(radius, r.FOV, r.T_FILL))


def loss_view_from_config(cfg: Config, device: torch.device) -> LossView:
    """The loss renderer of a config: ``MODEL_PATH_LOSS`` decimated to ``LOSS_MESH_FACES`` (cached
    in ``CACHE_DIR``), ``SHADER``, ``FACES_PER_PIXEL``, ``DEPTH_GRADIENT``, at ``T`` with ``FOV``
    and ``IMAGE_SIZE``, on ``device``; for a config of N objects one view of all N (each at its own ``T``)."""
    r = cfg.Rendering
    objects = object_configs(cfg)  # a head of N objects: one view of all N, each at its own T
    meshes = [load_loss_mesh(one.Dataset.MODEL_PATH_LOSS, target_faces=r.LOSS_MESH_FACES,
                             cache_dir=cfg.Dataset.CACHE_DIR, normalize=r.NORMALIZE_VERTICES) for one in objects]
    settings = RenderSettings(
        shader=r.SHADER, faces_per_pixel=r.FACES_PER_PIXEL, depth_gradient=r.DEPTH_GRADIENT
    )
    ts = [loss_translation(one, mesh.radius) for one, mesh in zip(objects, meshes, strict=True)]
    if len(meshes) == 1:
        return LossView(MeshRenderer(meshes[0], settings), ts[0], r.FOV, r.IMAGE_SIZE).to(device)
    return LossView(MeshRenderer(meshes, settings), ts, r.FOV, r.IMAGE_SIZE).to(device)


def augment_settings(cfg: Config) -> AugmentSettings:
    """The :class:`AugmentSettings` of ``[Augmentation]``."""
    a = cfg.Augmentation
    return AugmentSettings(**{f.name: a[f.name.upper()] for f in fields(AugmentSettings)})


def occlusion_settings(cfg: Config) -> OcclusionSettings:
    """The :class:`OcclusionSettings` of ``[Augmentation] SQUARE_OCCLUSION_*``."""
    a = cfg.Augmentation
    return OcclusionSettings(a.SQUARE_OCCLUSION_PROB, a.SQUARE_OCCLUSION_GRID, a.SQUARE_OCCLUSION_RATE,
                             a.SQUARE_OCCLUSION_MAX)


def backgrounds_from_config(
    cfg: Config,
    device: torch.device | str = "cpu",
    seed: int = 0,
    part: Literal["train", "held-out"] = "train",
    max_images: int | None = None,
    progress: bool = True,
) -> BackgroundSource:
    """The backgrounds of ``[Dataset] BACKGROUND_IMAGES`` at ``CROP_SIZE`` (image folders: at most
    ``max_images`` or ``NOOF_BG_IMGS`` images, crops chosen by ``seed``)."""
    d = cfg.Dataset
    if d.BACKGROUND_IMAGES == "procedural":
        return ProceduralBackgrounds(crop_size(cfg))
    images = load_background_images(
        d.BACKGROUND_IMAGES, crop_size(cfg), max_images or d.NOOF_BG_IMGS, seed=seed, part=part, progress=progress
    )
    return ImageBackgrounds(images, device)


def view_settings(cfg: Config) -> ViewSettings:
    """The :class:`ViewSettings` of a config."""
    d = cfg.Dataset
    return ViewSettings(
        size=crop_size(cfg),
        K=tuple(float(x) for x in d.K),
        distance=render_distance(cfg),
        pad_factor=float(d.PAD_FACTOR),
        max_rel_offset=float(cfg.Training.MAX_REL_OFFSET),
    )


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


def view_cache_from_config(
    cfg: Config, device: torch.device | str = "cpu", progress: bool = True, targets: bool = False,
    dist: Dist | None = None,
) -> ViewCache:
    """The view cache of a config (``NOOF_TRAINING_IMGS`` views of ``MODEL_PATH_DATA``), with the
    reconstruction targets when ``targets``."""
    d = cfg.Dataset
    if d.NOOF_TRAINING_IMGS < 1:
        raise ValueError("NOOF_TRAINING_IMGS is 0: views are rendered per batch, there is no cache")
    return build_view_cache(
        d.MODEL_PATH_DATA,
        view_settings(cfg),
        d.NOOF_TRAINING_IMGS,
        d.CACHE_DIR,
        normalize=cfg.Rendering.NORMALIZE_VERTICES,
        sampling=view_sampling(cfg).base,
        seed=d.VIEW_SEED,
        device=device,
        progress=progress,
        targets=targets,
        dist=dist,
    )


def loss_from_config(cfg: Config, device: torch.device) -> MultiPoseLoss:
    """The loss of a config: loss view (``[Rendering]``), ``loss_parameters(cfg)`` and
    ``[Rendering] LOSS_VIEWPOINTS``, on ``device``."""
    view = loss_view_from_config(cfg, device)
    return MultiPoseLoss(view, loss_parameters(cfg), euler_views(cfg.Rendering.LOSS_VIEWPOINTS)).to(device)
