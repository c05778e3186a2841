"""PBR training images of a config (``[Dataset] PBR_PATH``, :mod:`multipose.data.pbr`): the index of usable
instances (cached in ``CACHE_DIR/pbr/``, keyed by the folder's annotation files: sizes and times, ids and the
visibility rule), the crops and their mix with the synthetic renders (``PBR_MIX``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from multipose.config import Config, crop_size, num_objects
from multipose.data.augment import Augmenter
from multipose.data.bop_files import is_scene, json_file
from multipose.data.pbr import MIN_VISIB_FRACT, PbrCrops, PbrIndex, PbrMix, index_pbr, load_index, save_index
from multipose.data.sampling import make_generator
from multipose.experiment.factories import augment_settings
from multipose.experiment.findings import Finding, guarded, setting
from multipose.infra.content_key import content_key
from multipose.infra.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["check_pbr", "pbr_ids", "pbr_index_from_config", "pbr_mix_from_config"]


def pbr_ids(cfg: Config) -> tuple[int, ...]:
    """``[Dataset] PBR_OBJ_IDS`` as a tuple, one id per object."""
    ids = cfg.Dataset.PBR_OBJ_IDS
    return tuple(ids) if isinstance(ids, tuple) else (int(ids),)


def _index_key(folder: Path, ids: tuple[int, ...]) -> str:
    """What the index depends on: the scenes' annotation files (name, size, modification time), ids, the rule."""
    files: list[Any] = []
    for scene in sorted(p for p in folder.iterdir() if is_scene(p)):
        for name in ("scene_gt.json", "scene_gt_info.json"):
            found = json_file(scene / name)
            stat = found.stat() if found is not None else None
            files.append([scene.name, name, None if stat is None else [stat.st_size, stat.st_mtime_ns]])
    return content_key({"folder": os.fspath(folder.resolve()), "files": files, "ids": list(ids),
                        "min_visib": MIN_VISIB_FRACT, "version": 1})


def _cached_index(cfg: Config) -> Path:
    """Where the index of ``PBR_PATH`` for ``PBR_OBJ_IDS`` is cached (the key of its annotation files)."""
    folder = Path(cfg.Dataset.PBR_PATH)
    return Path(cfg.Dataset.CACHE_DIR) / "pbr" / f"index-{_index_key(folder, pbr_ids(cfg))[:24]}.npz"


def pbr_index_from_config(cfg: Config, progress: bool = True, write: bool = True) -> PbrIndex:
    """The usable instances of ``PBR_PATH``'s objects ``PBR_OBJ_IDS``, from the cache when its key matches, else
    indexed (and with ``write`` cached)."""
    folder, ids = Path(cfg.Dataset.PBR_PATH), pbr_ids(cfg)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder ([Dataset] PBR_PATH: a BOP train_pbr folder)")
    path = _cached_index(cfg)
    if path.is_file():
        try:
            return load_index(path)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("%s: unreadable (%s); indexing %s again", path, exc, folder)
    index = index_pbr(folder, ids, progress=progress)
    if not write:
        return index
    save_index(index, path)
    logger.info("PBR %s: %s usable instances (visib_fract >= %.1f) of objects %s; index cached in %s", folder,
                index.counts.tolist(), MIN_VISIB_FRACT, list(ids), path)
    return index


def pbr_mix_from_config(cfg: Config, synthetic: Any, device: torch.device | str = "cpu",
                        progress: bool = True) -> PbrMix:
    """The training batches of a config with ``PBR_PATH``: its PBR crops mixed with ``synthetic`` (the config's
    synthetic pipeline, None with ``PBR_MIX: 1``), seeded from ``[Training] RANDOM_SEED``."""
    d = cfg.Dataset
    crops = PbrCrops(pbr_index_from_config(cfg, progress), crop_size(cfg), d.PAD_FACTOR, cfg.Training.MAX_REL_OFFSET,
                     style=d.PBR_CROP, rotation=d.PBR_ROTATION, objects=d.PBR_OBJECTS,
                     augmenter=Augmenter(augment_settings(cfg)) if cfg.Training.AUGMENT_IMGS else None,
                     generator=make_generator(cfg.Training.RANDOM_SEED, "training-pbr"), device=device,
                     workers=d.PBR_WORKERS)
    return PbrMix(synthetic, crops, d.PBR_MIX, cfg.Training.BATCH_SIZE, cfg.Training.NUM_SAMPLES,
                  several=num_objects(cfg) > 1)


def check_pbr(cfg: Config, quick: bool = False) -> list[Finding]:
    """``python -m multipose.app.check_data``: how many PBR instances of each object are usable (nothing written);
    ``quick`` (every script's pre-flight check): from the cached index, else only that the folder holds scenes."""
    if not cfg.Dataset.PBR_PATH:
        return [Finding("note", setting("Dataset", "PBR_PATH"), "none: synthetic renders only")]
    what = setting("Dataset", "PBR_PATH")
    folder = Path(cfg.Dataset.PBR_PATH)
    if not folder.is_dir() or not any(is_scene(p) for p in folder.iterdir()):
        return [Finding("missing", what, f"{folder}: no BOP scene folders (NNNNNN/scene_gt.json); give a BOP "
                                         "train_pbr folder")]
    if quick and not _cached_index(cfg).is_file():
        return [Finding("note", what, f"{folder}: BOP scenes; indexed on first use")]

    def check() -> list[Finding]:
        index = pbr_index_from_config(cfg, progress=False, write=False)
        counts = ", ".join(f"object {i}: {c:,}" for i, c in zip(index.obj_ids, index.counts.tolist(), strict=True))
        return [Finding("ok", what, f"{cfg.Dataset.PBR_PATH}: usable instances (visib_fract >= {MIN_VISIB_FRACT}) "
                                    f"{counts} in {len(index.images):,} images; {cfg.Dataset.PBR_MIX:g} of every "
                                    f"batch ({cfg.Dataset.PBR_CROP} crops)")]

    return guarded(what, check)
