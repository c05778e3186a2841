"""Pretraining the encoder of an experiment config (``train_encoder.py``, config ``[Encoder]``): the config read
once and assembled, then the loop of :mod:`multipose.training.encoder`.

One run, top to bottom: check the architecture against the crop size -> guard the run folder
(``OUTPUT_PATH``) -> seed -> autoencoder, Adam, training data with clean targets, fixed preview
samples -> :func:`multipose.training.encoder.fit_encoder` -> the encoder as ``<OUTPUT_PATH>/encoder.pt``
(what ``ENCODER_WEIGHTS: auto`` loads).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from multipose.config import Config
from multipose.config.derived import check_crop_size
from multipose.experiment.datasets import training_data_from_config
from multipose.experiment.encoders import load_encoder, requested_encoder_config
from multipose.experiment.run_folder import RunFolder, encoder_weights_path, prepare_run_folder
from multipose.infra.checkpoint import CheckpointStore
from multipose.infra.content_key import file_sha256
from multipose.infra.distributed import Dist
from multipose.models.autoencoder import Autoencoder
from multipose.models.encoder import Encoder
from multipose.training.common import MetricsLog, rng_state, seed_everything, set_rng_state
from multipose.training.encoder import (
    KEEP_CHECKPOINTS,
    PREVIEW_SAMPLES,
    TRAIN_FIELDS,
    PretrainRun,
    PretrainSchedule,
    fit_encoder,
    fixed_samples,
)

logger = logging.getLogger(__name__)


def encoder_output_path(cfg: Config) -> Path:
    """Where pretraining writes the encoder: ``ENCODER_WEIGHTS`` when it is ``auto`` (that is
    ``<OUTPUT_PATH>/encoder.pt``), else ``<OUTPUT_PATH>/encoder.pt`` too -- an explicitly named weights
    file is never overwritten."""
    if cfg.Dataset.ENCODER_WEIGHTS == "auto":
        return encoder_weights_path(cfg)
    return RunFolder.of(cfg).encoder


def pretrain_encoder(
    cfg: Config,
    device: torch.device | str,
    force: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    dist: Dist | None = None,
) -> Path:
    """Pretrain (or resume pretraining) the encoder of ``cfg`` on ``device``; see the module docstring.

    ``dist``: this rank of a distributed run (:mod:`multipose.infra.distributed`): every rank draws the same
    global batch and trains on its share, batch norm sees the global batch, only rank 0 writes.

    Writes the encoder to :func:`encoder_output_path` and returns that path. Raises
    :class:`~multipose.infra.errors.ConfigError` when the crop size is not the encoder's input size and
    :class:`~multipose.experiment.run_folder.RunFolderError` when ``OUTPUT_PATH`` holds a run of another
    config (unless ``force``). The global RNG states are restored on return, so a caller that seeded
    them (the pose-head loop) draws the same numbers afterwards whether or not pretraining ran.

    ``stop_after`` ends the call after that iteration, as if the process were killed there (only the
    checkpoints due by then exist; the encoder file is written only when ``NUM_ITER`` is reached) --
    for testing resumption.
    """
    device = torch.device(device)
    architecture = requested_encoder_config(cfg)
    check_crop_size(cfg, architecture.image_size, f"the encoder to pretrain ({architecture.describe()})")
    dist = dist or Dist()
    run_dir = prepare_run_folder(cfg, force, write=dist.is_main)
    dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    saved_rng = rng_state()
    try:
        run = _build_run(cfg, device, RunFolder(run_dir), progress and dist.is_main, dist)
        path = fit_encoder(run, progress and dist.is_main, stop_after)
    finally:
        set_rng_state(saved_rng)
    dist.barrier()  # the encoder file is written
    return path


def pretrain_schedule(cfg: Config) -> PretrainSchedule:
    """The :class:`~multipose.training.encoder.PretrainSchedule` of ``[Encoder]``."""
    enc = cfg.Encoder
    return PretrainSchedule(num_iter=enc.NUM_ITER, batch_size=enc.BATCH_SIZE, learning_rate=enc.LEARNING_RATE,
                            bootstrap_ratio=enc.BOOTSTRAP_RATIO, save_interval=enc.SAVE_INTERVAL,
                            log_interval=enc.LOG_INTERVAL, config_text=cfg.to_ini())


def _build_run(cfg: Config, device: torch.device, folder: RunFolder, progress: bool, dist: Dist) -> PretrainRun:
    """Seeded initial weights, Adam, the training data with clean targets (in a distributed run the ranks
    render the view cache together), the fixed preview samples."""
    seed_everything(cfg.Training.RANDOM_SEED)  # the initial weights
    architecture = requested_encoder_config(cfg)
    model = Autoencoder.from_config(architecture).to(device)
    data = training_data_from_config(cfg, device, progress=progress, with_target=True, dist=dist)
    preview = fixed_samples(data, PREVIEW_SAMPLES, cfg.Training.RANDOM_SEED) if cfg.Training.SAVE_IMAGES else None
    model_path = cfg.Dataset.MODEL_PATH_DATA
    return PretrainRun(
        schedule=pretrain_schedule(cfg), folder=folder.encoder_dir, out_path=encoder_output_path(cfg),
        board_dir=folder.board / "encoder",
        metadata={"data_mesh": Path(model_path).name, "data_mesh_sha256": file_sha256(model_path)},
        architecture=architecture, model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=cfg.Encoder.LEARNING_RATE), data=data, preview=preview,
        store=CheckpointStore(folder.encoder_dir, prefix="encoder", keep=KEEP_CHECKPOINTS),
        log=MetricsLog(folder.encoder_dir / "train-loss.csv", TRAIN_FIELDS, step_field="iteration",
                       write=dist.is_main),
        dist=dist,
    )


def ensure_encoder(
    cfg: Config, device: torch.device | str, progress: bool = True, dist: Dist | None = None
) -> Encoder:
    """The encoder ``[Dataset] ENCODER_WEIGHTS`` names (eval mode, on the CPU), pretrained first when it
    is ``auto`` and ``<OUTPUT_PATH>/encoder.pt`` does not exist yet.

    Pretraining leaves the global RNG states as it found them (see :func:`pretrain_encoder`).
    """
    path = encoder_weights_path(cfg)
    if cfg.Dataset.ENCODER_WEIGHTS == "auto" and not path.exists():
        enc = cfg.Encoder
        logger.warning(
            "[Dataset] ENCODER_WEIGHTS = auto and %s does not exist: pretraining an encoder first, as "
            "train_encoder.py does (%s; [Encoder] NUM_ITER = %d iterations of %d crops on %s). Expected "
            "duration: measured and logged after the first iterations; on a 2-core CPU the small preset "
            "takes about 0.55 s per iteration of 64 crops, the aae preset ~25 s (use a GPU). To skip this, "
            "set ENCODER_WEIGHTS to an original AAE .npy or a multipose .pt.",
            path, requested_encoder_config(cfg).describe(), enc.NUM_ITER, enc.BATCH_SIZE, torch.device(device),
        )
        pretrain_encoder(cfg, device, progress=progress, dist=dist)
    return load_encoder(cfg)
