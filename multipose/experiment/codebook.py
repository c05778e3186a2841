"""The AAE codebook baseline of an evaluation: the codes of clean renders of the data model at a grid
of rotations (``[Evaluation] CODEBOOK_VIEWS x CODEBOOK_INPLANE``), built once per encoder and cached in
``CACHE_DIR/codebooks/``. The lookup itself is :class:`multipose.models.Codebook`."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from multipose.config import Config
from multipose.core.mesh import normalization_key
from multipose.data.views import ViewRenderer
from multipose.experiment.factories import load_data_mesh, view_settings
from multipose.infra.content_key import content_key, file_sha256
from multipose.infra.distributed import Dist
from multipose.infra.progress import progress_bar
from multipose.models import Codebook, Encoder, codebook_rotations
from multipose.models.weights import ModelFileError, encoder_digest

logger = logging.getLogger(__name__)

__all__ = ["codebook_from_config"]

_CODEBOOK_CACHE_VERSION = 2  # 2: icosphere viewpoints (1: Deserno)


def _codebook_path(cfg: Config, encoder: Encoder) -> Path:
    """Where the codebook of ``cfg`` and ``encoder`` is cached (the name hashes all it depends on)."""
    d, ev = cfg.Dataset, cfg.Evaluation
    settings = replace(view_settings(cfg), max_rel_offset=0.0)
    described = {
        "version": _CODEBOOK_CACHE_VERSION,
        "mesh_sha256": file_sha256(d.MODEL_PATH_DATA),
        "normalize": normalization_key(cfg.Rendering.NORMALIZE_VERTICES),
        "view": settings.as_dict(),
        "views": ev.CODEBOOK_VIEWS,
        "inplane": ev.CODEBOOK_INPLANE,
        "encoder": encoder_digest(encoder),
    }
    key = content_key(described)[:24]
    return Path(d.CACHE_DIR) / "codebooks" / f"codebook-{ev.CODEBOOK_VIEWS}x{ev.CODEBOOK_INPLANE}-{key}.pt"


@torch.no_grad()
def codebook_from_config(
    cfg: Config, encoder: Encoder, device: torch.device | str = "cpu", progress: bool = True,
    dist: Dist | None = None,
) -> Codebook:
    """The AAE codebook for ``encoder``: codes of clean renders (object centred in the crop, on black,
    lit from the camera) at ``codebook_rotations(CODEBOOK_VIEWS, CODEBOOK_INPLANE)``. Cached as
    ``CACHE_DIR/codebooks/codebook-<V>x<I>-<key>.pt``, keyed by the mesh's content, the crop settings,
    the grid and the encoder's weights; a damaged file is built again. ``dist``: every rank calls it; each
    renders and encodes its share of the views, every rank gets the codebook, rank 0 writes the file.
    Returned on the CPU."""
    dist = dist or Dist()
    path = _codebook_path(cfg, encoder)
    if path.is_file():  # the same file on every rank: all read it, or all build
        try:
            codebook = Codebook.load(path)
            logger.info("codebook: %d entries from %s", codebook.num_entries, path)
            return codebook
        except ModelFileError as exc:
            logger.warning("codebook %s is unusable (%s); building it again", path, exc)
    device = torch.device(device)
    ev = cfg.Evaluation
    rotations = codebook_rotations(ev.CODEBOOK_VIEWS, ev.CODEBOOK_INPLANE)
    mesh = load_data_mesh(cfg)
    renderer = ViewRenderer(mesh, view_settings(cfg), device)
    encoder = encoder.to(device).eval()
    codes = []
    start = time.perf_counter()
    mine = dist.batches(rotations.shape[0], ev.BATCH_SIZE)
    with progress_bar(
        total=sum(s.stop - s.start for s in mine), desc="building codebook", unit="view", disable=not progress,
        leave=False,
    ) as bar:
        for rows in mine:
            images = renderer.render_centred(rotations[rows]).float() / 255.0  # 8-bit levels, as the training images
            codes.append(encoder.encode(images).float().cpu())
            bar.update(rows.stop - rows.start)
    codebook = Codebook(torch.cat(dist.all_gather_list(codes)), rotations)
    if dist.is_main:
        codebook.save(path)
        logger.info("codebook: %d entries built in %.1f s (%d process(es)), saved to %s", codebook.num_entries,
                    time.perf_counter() - start, dist.world_size, path)
    return codebook
