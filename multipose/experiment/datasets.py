"""The training data and validation set of an experiment config (:mod:`multipose.data` assembled).

:func:`training_data_from_config` (view cache rendered on first use, sampler, backgrounds, augmentation, all
seeded from ``[Training] RANDOM_SEED``), :func:`generate_samples` (a fresh synthetic set of a config) and
:func:`validation_data_from_config` (``VALID_DATA_PATH`` files or a generated set cached in the run folder).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path

import torch

from multipose.config import Config, crop_size, view_sampling
from multipose.core.mesh import load_mesh, normalization_key
from multipose.core.settings import ViewSampling
from multipose.data.augment import Augmenter
from multipose.data.datasets import VALIDATION_SEED, TrainingData, synthesize_samples
from multipose.data.io import SampleSet, load_sample_files, load_samples, save_samples
from multipose.data.objects import ObjectMix
from multipose.data.sampling import derive_seed, make_generator
from multipose.data.views import ViewRenderer
from multipose.experiment.factories import (
    augment_settings,
    backgrounds_from_config,
    load_data_mesh,
    occlusion_settings,
    pose_sampler_from_config,
    view_cache_from_config,
    view_settings,
)
from multipose.experiment.objects import object_configs
from multipose.experiment.run_folder import RunFolder
from multipose.infra.content_key import content_key, file_sha256
from multipose.infra.distributed import Dist
from multipose.infra.errors import DataError

logger = logging.getLogger(__name__)


def training_data_from_config(
    cfg: Config, device: torch.device | str = "cpu", progress: bool = True, *, with_target: bool = False,
    dist: Dist | None = None,
) -> TrainingData:
    """The training data of a config: view cache (rendered on first use), sampler, backgrounds and
    augmentation, seeded from ``[Training] RANDOM_SEED``; ``with_target``: batches also hold the
    clean renders as ``target`` (see :class:`TrainingData`)."""
    seed = cfg.Training.RANDOM_SEED
    device = torch.device(device)
    cache, renderer, pool = None, None, None
    if cfg.Dataset.NOOF_TRAINING_IMGS > 0:
        cache = view_cache_from_config(cfg, device, progress=progress, targets=with_target, dist=dist)
        pool = cache.R
    else:
        mesh = load_data_mesh(cfg)
        renderer = ViewRenderer(mesh, view_settings(cfg), device)
    sampler = pose_sampler_from_config(cfg, make_generator(seed, "training-poses"), pool=pool)
    backgrounds = backgrounds_from_config(
        cfg, device, seed=derive_seed(seed, "training-backgrounds"), part="train", progress=progress
    )
    return TrainingData(
        sampler=sampler,
        backgrounds=backgrounds,
        augmenter=Augmenter(augment_settings(cfg)) if cfg.Training.AUGMENT_IMGS else None,
        batch_size=cfg.Training.BATCH_SIZE,
        num_samples=cfg.Training.NUM_SAMPLES,
        generator=make_generator(seed, "training-images"),
        device=device,
        cache=cache,
        renderer=renderer,
        with_target=with_target,
        occlusion=occlusion_settings(cfg),
        dist=dist,
    )


@torch.no_grad()
def generate_samples(
    cfg: Config,
    num: int,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = True,
    dist: Dist | None = None,
) -> SampleSet:
    """``num`` fresh synthetic samples: poses from the base of ``VIEW_SAMPLING``, rendered crops,
    held-out backgrounds, augmentation when ``AUGMENT_IMGS``; all draws from ``seed``. ``dist``: every
    rank renders its share of the crops and gets them all, then composes the same samples.

    Images are rounded to 8-bit levels (what a file stores). ``meta`` holds ``config`` (resolved
    INI), ``mesh`` and ``seed``. Returns CPU tensors.
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    d = cfg.Dataset
    backgrounds = backgrounds_from_config(
        cfg, device, seed=derive_seed(seed, "samples-backgrounds"), part="held-out",
        max_images=min(d.NOOF_BG_IMGS, num), progress=progress,
    )
    return synthesize_samples(
        ViewRenderer(load_data_mesh(cfg), view_settings(cfg), torch.device(device)),
        ViewSampling(view_sampling(cfg).base),
        backgrounds,
        Augmenter(augment_settings(cfg)) if cfg.Training.AUGMENT_IMGS else None,
        num,
        seed,
        progress=progress,
        dist=dist,
        meta={"config": cfg.to_ini(), "mesh": str(d.MODEL_PATH_DATA), "seed": int(seed)},
    )


def _validation_key(cfg: Config) -> str:
    """Hash of everything a generated validation set depends on."""
    d = cfg.Dataset
    spec = view_sampling(cfg)
    described = {
        "mesh_sha256": file_sha256(d.MODEL_PATH_DATA),
        "normalize": normalization_key(cfg.Rendering.NORMALIZE_VERTICES),
        "view": view_settings(cfg).as_dict(),
        "sampling": file_sha256(spec.base) if spec.is_file else spec.base,
        "backgrounds": d.BACKGROUND_IMAGES,
        "augment": asdict(augment_settings(cfg)) if cfg.Training.AUGMENT_IMGS else None,
        "num": d.NOOF_VALID_IMGS,
        "seed": VALIDATION_SEED,
        "version": 2,  # 2: the original's sphere sampling, .p rotation files converted
    }
    return content_key(described)


def validation_data_from_config(
    cfg: Config, device: torch.device | str = "cpu", progress: bool = True, dist: Dist | None = None,
    path: Path | None = None,
) -> SampleSet:
    """The validation set: ``VALID_DATA_PATH`` files (images resized to ``CROP_SIZE`` if needed),
    or a generated set cached as ``path`` (default ``<OUTPUT_PATH>/validation.npz``; rebuilt when the config's data
    settings change or the file is unreadable; ``dist``: the ranks render it together, rank 0 writes it,
    every rank reads the file). Returns CPU tensors."""
    d = cfg.Dataset
    if d.VALID_DATA_PATH:
        samples = load_sample_files(d.VALID_DATA_PATH, image_size=crop_size(cfg))
        logger.info("validation set: %d samples from %s", len(samples), ", ".join(d.VALID_DATA_PATH))
        return samples
    if not Path(d.MODEL_PATH_DATA).is_file():
        load_mesh(d.MODEL_PATH_DATA)  # raises the right MeshError
    key = _validation_key(cfg)
    path = path or RunFolder.of(cfg).validation
    if path.is_file():
        try:
            samples = load_samples(path)
        except DataError as exc:
            logger.warning("validation set %s is unusable (%s); generating it again", path, exc)
        else:
            if samples.meta.get("key") == key:
                logger.info("validation set: %d generated samples (cached: %s)", len(samples), path)
                return samples
            logger.info("validation set %s was made with other settings; generating it again", path)
    dist = dist or Dist()  # every rank found the same file, so all generate (or none did)
    samples = generate_samples(cfg, d.NOOF_VALID_IMGS, VALIDATION_SEED, device, progress=progress, dist=dist)
    if dist.is_main:
        save_samples(path, replace(samples, meta={**samples.meta, "key": key}))
        logger.info("validation set: generated %d samples, wrote %s", len(samples), path)
    dist.barrier()  # the file is written
    return load_samples(path)


def object_mix_from_config(cfg: Config, device: torch.device | str = "cpu", progress: bool = True,
                           dist: Dist | None = None) -> ObjectMix:
    """The training data of a config of N objects: each object's own pipeline (its view cache, and streams seeded
    from ``RANDOM_SEED`` and the object's index), mixed by an object stream of its own (:class:`ObjectMix`)."""
    seed = cfg.Training.RANDOM_SEED
    parts = []
    for n, one in enumerate(object_configs(cfg)):
        own = one.with_value("Training", "RANDOM_SEED", derive_seed(seed, f"object-{n}") % 2**32,
                             cfg.origin("Training", "RANDOM_SEED"))
        parts.append(training_data_from_config(own, device, progress=progress, dist=dist))
    return ObjectMix(parts, make_generator(seed, "training-objects"), cfg.Training.BATCH_SIZE,
                     cfg.Training.NUM_SAMPLES)


def object_validation_from_config(cfg: Config, device: torch.device | str = "cpu", progress: bool = True,
                                  dist: Dist | None = None) -> list[SampleSet]:
    """One validation set per object of a config of N objects: its ``VALID_DATA_PATH`` file, or generated into
    ``<OUTPUT_PATH>/validation-obj<n>.npz``."""
    folder = RunFolder.of(cfg)
    return [validation_data_from_config(one, device, progress, dist, path=folder.object_validation(n))
            for n, one in enumerate(object_configs(cfg))]
