"""The encoder of an experiment config: the architecture ``[Encoder]`` asks for, the weights file
``[Dataset] ENCODER_WEIGHTS`` names (``auto``: the run folder's ``encoder.pt``), and the crop size it implies.
Reading the files themselves is :mod:`multipose.models.weights`' and :mod:`multipose.models.aae_npy`'."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from multipose.config import Config, crop_size, encoder_arch
from multipose.experiment.run_folder import ENCODER_SIZE_ORIGIN, encoder_weights_path
from multipose.infra.content_key import file_sha256
from multipose.infra.errors import ConfigError, ModelFileError
from multipose.models.aae_npy import load_aae_npy
from multipose.models.encoder import PRESETS, Encoder, EncoderConfig
from multipose.models.weights import encoder_from_checkpoint, read_torch_file, stored_encoder_config, stored_input_size


def requested_encoder_config(cfg: Config, stored: EncoderConfig | None = None) -> EncoderConfig:
    """The architecture ``[Encoder]`` asks for: the ``ARCH`` preset with the set keys replaced.

    ``ARCH: auto`` means: the architecture stored in the weights file (``stored``, for a ``.pt``),
    else ``aae`` when ``ENCODER_WEIGHTS`` is an original ``.npy``, else ``small`` (what encoder
    pretraining builds).
    """
    enc = cfg.Encoder
    if enc.ARCH != "auto":
        base = PRESETS[enc.ARCH]
    elif stored is not None:
        base = stored
    else:
        base = PRESETS[encoder_arch(cfg)]
    overrides = {"channels": enc.CHANNELS, "latent_size": enc.LATENT_SIZE, "batch_norm": enc.BATCH_NORMALIZATION}
    try:
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise ConfigError(f"{cfg.origin('Encoder', 'ARCH')}: [Encoder]: {exc}") from None


def with_encoder_crop_size(cfg: Config) -> Config:
    """``cfg`` with an empty ``[Dataset] CROP_SIZE`` set to the input size stored in its encoder file when
    that differs from the ``[Encoder] ARCH`` preset's (``ARCH: auto`` and ``ENCODER_WEIGHTS``, or ``auto``'s
    ``<OUTPUT_PATH>/encoder.pt``, an existing multipose ``.pt``: e.g. an encoder copied from another run);
    else ``cfg`` itself. The entry scripts call it after loading the config (:func:`multipose.app.cli.run`), so
    :func:`~multipose.config.crop_size` never reads the file; the training and evaluation set-up call it again for
    callers that did not (idempotent: a set ``CROP_SIZE`` is kept)."""
    weights = encoder_weights_path(cfg)
    if cfg.Dataset.CROP_SIZE is not None or cfg.Encoder.ARCH != "auto":
        return cfg
    if weights.suffix.lower() not in (".pt", ".pth") or not weights.is_file():
        return cfg
    stored = stored_input_size(weights)
    if stored is None or stored == crop_size(cfg):
        return cfg
    return cfg.with_value("Dataset", "CROP_SIZE", stored, f"{weights} {ENCODER_SIZE_ORIGIN}")


def load_encoder(cfg: Config) -> Encoder:
    """The encoder ``[Dataset] ENCODER_WEIGHTS`` names, built as ``[Encoder]`` says; eval mode, CPU.

    ``.npy``: the original's weights, architecture from ``[Encoder]``; ``.pt``/``.pth``: our file, checked
    against ``[Encoder]`` (``ARCH: auto`` takes the file's); ``auto``: ``<OUTPUT_PATH>/encoder.pt``.
    Raises :class:`ModelFileError`.
    """
    path = encoder_weights_path(cfg)
    if cfg.Dataset.ENCODER_WEIGHTS == "auto" and not path.exists():
        raise ModelFileError(
            f"{path}: no pretrained encoder yet ([Dataset] ENCODER_WEIGHTS = auto looks here); pretrain one "
            "with train_encoder.py CFG (train.py does it by itself) or set ENCODER_WEIGHTS to an "
            "original AAE .npy or a multipose .pt"
        )
    if path.suffix.lower() == ".npy":
        return load_aae_npy(path, requested_encoder_config(cfg))
    payload = read_torch_file(path)
    stored = stored_encoder_config(payload, os.fspath(path))
    _check_data_mesh(payload, cfg, path)
    return encoder_from_checkpoint(payload, source=os.fspath(path), expected=requested_encoder_config(cfg, stored))


def _check_data_mesh(payload: Any, cfg: Config, path: Path) -> None:
    """Refuse an encoder pretrained on another CAD model than ``[Dataset] MODEL_PATH_DATA`` (known from
    the ``data_mesh_sha256`` that pretraining stores; files without it are not checked): an AAE
    encoder's code describes the views of the object it was trained on, nothing else. With several objects,
    it must be one of them."""
    metadata = payload.get("metadata", {}) if isinstance(payload, dict) else {}
    trained_on = metadata.get("data_mesh_sha256") if isinstance(metadata, dict) else None
    paths = cfg.Dataset.MODEL_PATH_DATA
    models = paths if isinstance(paths, tuple) else (paths,)
    if trained_on is None or not all(Path(m).is_file() for m in models) or trained_on in map(file_sha256, models):
        return
    model = models[0] if len(models) == 1 else ", ".join(models)
    raise ModelFileError(
        f"{cfg.origin('Dataset', 'ENCODER_WEIGHTS')}: {path} was pretrained on the CAD model "
        f"{metadata.get('data_mesh', '?')}, but [Dataset] MODEL_PATH_DATA is {model} (another file); pretrain "
        "an encoder for this model with ENCODER_WEIGHTS: auto (train.py does it first) or train_encoder.py"
    )
