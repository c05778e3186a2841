"""A :class:`~multipose.inference.estimator.PoseEstimator` of a trained run, the Python entry to poses of one's
own images::

    from multipose.experiment.estimators import estimator_from_run

    estimator = estimator_from_run("output/my_run")              # its config.cfg and models/model-best.pt
    poses = estimator.predict(image_rgb, K, boxes_xyxy)           # typed: poses.R_top, poses.t_top, ...

:func:`estimator_from_config` takes a config (and a checkpoint) instead, as ``predict.py`` does. The head is
checked against the config's encoder (the encoder it was trained on, its K and objects) before it is used.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from multipose.config import Config, check_crop_size, load_config, resolve_device
from multipose.experiment.encoders import with_encoder_crop_size
from multipose.experiment.factories import load_data_mesh, view_settings
from multipose.experiment.objects import object_configs
from multipose.experiment.pose_checkpoints import checked_models, default_checkpoint
from multipose.experiment.run_folder import RunFolder, encoder_weights_path
from multipose.inference.estimator import PosedObject, PoseEstimator
from multipose.inference.export import export_model
from multipose.infra.errors import RunFolderError

__all__ = ["estimator_from_config", "estimator_from_run", "export_checkpoint", "posed_objects"]


def estimator_from_config(
    cfg: Config, checkpoint: str | os.PathLike[str] | None = None, device: torch.device | str | None = None,
    trust: bool = False,
) -> PoseEstimator:
    """The estimator of the head in ``checkpoint`` (default ``<OUTPUT_PATH>/models/model-best.pt``) on the encoder
    of ``cfg``, posing each object of ``cfg`` (its model, training camera and distance, ``[Evaluation] OBJ_ID``);
    on ``device`` (default the config's). Raises :class:`~multipose.infra.errors.UserInputError` subclasses for a
    checkpoint that does not fit the config (another encoder, K or number of objects); ``trust``: allow an
    unsafe load of the checkpoint."""
    cfg = with_encoder_crop_size(cfg)
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(cfg)
    head, _, encoder = checked_models(cfg, path, trust)
    check_crop_size(cfg, encoder.config.image_size, f"the encoder {encoder_weights_path(cfg)}")
    return PoseEstimator(encoder, head, posed_objects(cfg), resolve_device(cfg) if device is None else device)


def posed_objects(cfg: Config) -> list[PosedObject]:
    """The objects of ``cfg`` as an estimator poses them: ``[Evaluation] OBJ_ID``, the data model as the training
    renders saw it, and the training renders' view settings."""
    return [PosedObject(obj_id=one.Evaluation.OBJ_ID, mesh=load_data_mesh(one), view=view_settings(one))
            for one in object_configs(cfg)]


def estimator_from_run(
    run_folder: str | os.PathLike[str], checkpoint: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None, trust: bool = False,
) -> PoseEstimator:
    """:func:`estimator_from_config` with the resolved ``config.cfg`` that ``train.py`` wrote into ``run_folder``
    (its ``OUTPUT_PATH`` taken as ``run_folder``, wherever the folder is now; its other relative paths are read
    from the working directory, as in training)."""
    config = RunFolder(Path(run_folder)).config
    if not config.is_file():
        raise RunFolderError(f"{run_folder}: no config.cfg; give the OUTPUT_PATH of a train.py run")
    cfg = load_config(config, [f"Training.OUTPUT_PATH={run_folder}"])  # the folder where it is now
    return estimator_from_config(cfg, checkpoint, device, trust)


def export_checkpoint(
    checkpoint: str | os.PathLike[str], fmt: str, out: str | os.PathLike[str],
    config: str | os.PathLike[str] | None = None, trust: bool = False,
) -> Path:
    """Export the head of ``checkpoint`` with its encoder (:func:`~multipose.inference.export.export_model`) in
    ``fmt`` to ``out``. The encoder is the one of ``config`` (default: the ``config.cfg`` of the run the checkpoint
    is in, ``<run>/models/<checkpoint>``), checked to be the one the head was trained on."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise RunFolderError(f"{checkpoint}: no such checkpoint file")
    run = checkpoint.resolve().parent.parent
    if config is None and not (run / "config.cfg").is_file():
        raise RunFolderError(f"{checkpoint}: not in a run folder with a config.cfg (<run>/models/); give the "
                             "run's config with --config")
    cfg = load_config(config) if config is not None else load_config(run / "config.cfg",
                                                                       [f"Training.OUTPUT_PATH={run}"])
    head, _, encoder = checked_models(with_encoder_crop_size(cfg), checkpoint, trust)
    return export_model(encoder, head, fmt, out)
