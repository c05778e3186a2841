"""The pose head of a run's checkpoint, checked against the config and the encoder before any use: the
evaluation's (:mod:`multipose.experiment.evaluation`) and every other reader's of a trained head."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from multipose.config import Config, num_hypotheses, num_objects
from multipose.experiment.encoders import load_encoder
from multipose.experiment.run_folder import encoder_weights_path, pose_checkpoints
from multipose.infra.errors import ConfigError
from multipose.models import Encoder, PoseHead
from multipose.models.head import head_encoder_mismatch, with_decoding
from multipose.models.head_checkpoint import load_head_checkpoint
from multipose.models.weights import ModelFileError, encoder_digest, encoder_mismatch

__all__ = ["checked_models", "default_checkpoint", "load_pose_checkpoint"]


def default_checkpoint(cfg: Config) -> Path:
    """``<OUTPUT_PATH>/models/model-best.pt``."""
    return pose_checkpoints(cfg).best_path


def load_pose_checkpoint(
    path: str | os.PathLike[str], cfg: Config | None = None, trust: bool = False
) -> tuple[PoseHead, dict[str, Any]]:
    """The pose head of a checkpoint, ours or the original's ``train.py``'s (eval mode, CPU), and the
    checkpoint dict, checked against the K and N of ``cfg``;
    ``trust``: allow an unsafe load (:func:`multipose.models.head_checkpoint.load_head_checkpoint`)."""
    if cfg is None:
        return load_head_checkpoint(path, None, trust)
    head, state = load_head_checkpoint(path, num_hypotheses(cfg), trust, num_objects(cfg))
    if head.config.num_objects != num_objects(cfg):
        raise ModelFileError(f"{path}: holds a head of {head.config.num_objects} object(s), but [Dataset] "
                             f"MODEL_PATH_DATA names {num_objects(cfg)}; give one model path per object of the head")
    if head.config.num_hypotheses != num_hypotheses(cfg):
        raise ModelFileError(f"{path}: holds a head of K = {head.config.num_hypotheses} hypotheses, but [Rendering] "
                             f"VIEWS asks for K = {num_hypotheses(cfg)}; use the config of the run that trained it "
                             "(its config.cfg)")
    return head, state


def checked_models(cfg: Config, path: Path, trust: bool) -> tuple[PoseHead, dict[str, Any], Encoder]:
    """The head of checkpoint ``path`` (decoded as the config says), its checkpoint dict, and the config's encoder,
    checked to be the one the head was trained on."""
    head, state = load_pose_checkpoint(path, cfg, trust)
    head = with_decoding(head, cfg.Training.ANCHOR_DECODING)  # how to decode is the config's, not the file's
    if cfg.Evaluation.CODEBOOK_ENCODER == "finetuned" and head.encoder is None:
        raise ConfigError(f"[Evaluation] CODEBOOK_ENCODER = finetuned: {path} holds no fine-tuned encoder layer "
                          "(trained without [Training] FINETUNE_ENCODER); set CODEBOOK_ENCODER: pretrained")
    encoder = load_encoder(cfg)
    stored = state.get("encoder_args")
    if stored is not None and stored != encoder.config.to_dict():
        raise ModelFileError(
            f"{path}: the head was trained on an encoder with {stored}, but [Dataset] ENCODER_WEIGHTS gives "
            f"{encoder.config.to_dict()}; evaluate with the training run's encoder"
        )
    mismatch = encoder_mismatch(state, encoder_digest(encoder), path, encoder_weights_path(cfg))
    if mismatch:
        raise ModelFileError(f"{mismatch}; its codes would mean nothing to the head: set [Dataset] ENCODER_WEIGHTS "
                             "to the encoder the head was trained with")
    unfit = head_encoder_mismatch(head.config, encoder.config)
    if unfit:
        raise ModelFileError(f"{path}: {unfit}")
    return head, state, encoder
