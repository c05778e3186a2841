"""Encoder weight files: our ``.pt`` (read and written here) and the original AAE ``.npy``
(:mod:`multipose.models.aae_npy`); which one a config names is resolved by :mod:`multipose.experiment.encoders`.

``[Dataset] ENCODER_WEIGHTS`` takes one of:

- **an original ``.npy``** -- the AAE's TensorFlow encoder as the multi-pose original loaded it, read
  by :mod:`multipose.models.aae_npy` (a restricted unpickler: a file cannot run code);
- **our ``.pt``** -- written by :func:`save_encoder`: ``{"format": "multipose-encoder", "version": 1,
  "encoder_config": EncoderConfig.to_dict(), "state_dict": ..., "metadata": {...}}``, read with
  ``torch.load(weights_only=True)``; the model is rebuilt from ``encoder_config``.
- **``auto``** -- ``<[Training] OUTPUT_PATH>/encoder.pt``, written by encoder pretraining.

Every problem (missing/unreadable file, missing or mis-shaped tensor, architecture mismatch) raises
:class:`ModelFileError` with one line naming the file and the tensor.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from multipose.infra.atomic import atomic_torch_save
from multipose.infra.checkpoint import load_checkpoint
from multipose.infra.errors import ModelFileError
from multipose.models.aae_npy import format_shape, read_file_bytes
from multipose.models.encoder import Encoder, EncoderConfig

__all__ = [
    "ENCODER_FORMAT",
    "ModelFileError",
    "encoder_checkpoint",
    "encoder_digest",
    "encoder_mismatch",
    "encoder_from_checkpoint",
    "stored_input_size",
    "load_encoder_pt",
    "read_torch_file",
    "save_encoder",
    "stored_encoder_config",
]

#: ``format`` tag of our encoder ``.pt`` files.
ENCODER_FORMAT = "multipose-encoder"
_ENCODER_VERSION = 1


# --------------------------------------------------------------------------------------------------
# Our .pt
# --------------------------------------------------------------------------------------------------


def encoder_checkpoint(encoder: Encoder, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The payload :func:`save_encoder` writes (CPU tensors); a training checkpoint can embed it."""
    return {
        "format": ENCODER_FORMAT,
        "version": _ENCODER_VERSION,
        "encoder_config": encoder.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
        "metadata": dict(metadata or {}),
    }


def stored_encoder_config(payload: Any, source: str) -> EncoderConfig:
    if not isinstance(payload, Mapping) or payload.get("format") != ENCODER_FORMAT:
        got = f"a {type(payload).__name__}" if not isinstance(payload, Mapping) else (
            f"a dictionary with format {payload.get('format')!r}")
        raise ModelFileError(
            f"{source}: not a multipose encoder file (got {got}; expected format '{ENCODER_FORMAT}', "
            "as written by multipose.models.save_encoder)"
        )
    if payload.get("version") != _ENCODER_VERSION:
        raise ModelFileError(f"{source}: encoder file version {payload.get('version')!r}; this multipose reads "
                             f"version {_ENCODER_VERSION}")
    try:
        return EncoderConfig.from_dict(payload["encoder_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: invalid 'encoder_config' ({exc})") from None


def encoder_from_checkpoint(
    payload: Mapping[str, Any], *, source: str = "<checkpoint>", expected: EncoderConfig | None = None
) -> Encoder:
    """Rebuild an :class:`Encoder` (eval mode) from :func:`encoder_checkpoint`'s payload.

    The architecture comes from the stored arguments; with ``expected``, a different one is an error.
    """
    config = stored_encoder_config(payload, source)
    if expected is not None and config != expected:
        raise ModelFileError(
            f"{source}: holds an encoder with {config.describe()}, but [Encoder] asks for {expected.describe()}; "
            "set [Encoder] ARCH: auto (and no overrides) to use the file's architecture"
        )
    state = payload.get("state_dict")
    if not isinstance(state, Mapping):
        raise ModelFileError(f"{source}: missing 'state_dict'")
    encoder = Encoder(config)
    reference = encoder.state_dict()
    for key, ref in reference.items():
        if key not in state:
            raise ModelFileError(f"{source}: missing tensor '{key}' for an encoder with {config.describe()}")
        value = state[key]
        if not isinstance(value, torch.Tensor) or value.shape != ref.shape:
            got = format_shape(tuple(value.shape)) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
            raise ModelFileError(
                f"{source}: tensor '{key}' has shape {got}, expected {format_shape(tuple(ref.shape))} "
                f"for an encoder with {config.describe()}"
            )
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ModelFileError(f"{source}: tensor '{key}' holds NaN or infinite values")
    extra = sorted(set(state) - set(reference))
    if extra:
        raise ModelFileError(f"{source}: unexpected tensor '{extra[0]}' for an encoder with {config.describe()}")
    encoder.load_state_dict(dict(state), strict=True)
    return encoder.eval()


def encoder_digest(encoder: Encoder) -> str:
    """sha256 (hex) of an encoder's architecture and weights: the identity of the frozen encoder a pose
    head was trained on (stored in pose checkpoints, part of the codebook cache key)."""
    digest = hashlib.sha256(json.dumps(encoder.config.to_dict(), sort_keys=True).encode())
    for name, value in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def encoder_mismatch(
    checkpoint: Mapping[str, Any], sha256: str, source: str | os.PathLike[str], weights: str | os.PathLike[str]
) -> str | None:
    """Why a pose-head ``checkpoint`` (read from ``source``) does not fit the encoder of digest
    ``sha256`` (loaded from ``weights``), or None when it does -- or when the checkpoint predates
    ``encoder_sha256`` and cannot tell."""
    stored = checkpoint.get("encoder_sha256")
    if stored is None or stored == sha256:
        return None
    return (f"{os.fspath(source)}: the head was trained on other encoder weights (sha256 {stored[:12]}) than "
            f"{os.fspath(weights)} holds now ({sha256[:12]})")


def save_encoder(
    encoder: Encoder, path: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``encoder`` as our ``.pt`` (architecture + state dict + ``metadata``), atomically.

    ``metadata`` must hold plain Python values (read back with ``torch.load(weights_only=True)``).
    """
    return atomic_torch_save(encoder_checkpoint(encoder, metadata), path)


def read_torch_file(path: str | os.PathLike[str], what: str = "encoder file (.pt)") -> Any:
    """``torch.load(weights_only=True)`` of ``path`` on the CPU; problems raise :class:`ModelFileError`."""
    path = Path(path)
    data = read_file_bytes(path, what)
    try:
        return load_checkpoint(io.BytesIO(data), "cpu", name=path)
    except Exception as exc:  # noqa: BLE001 - garbage makes the unpickler raise anything (even IndexError)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a readable PyTorch file ({reason[:160]})") from None


def load_encoder_pt(path: str | os.PathLike[str], *, expected: EncoderConfig | None = None) -> Encoder:
    """Read our ``.pt`` (:func:`save_encoder`): an :class:`Encoder` in eval mode, on the CPU."""
    path = Path(path)
    return encoder_from_checkpoint(read_torch_file(path), source=os.fspath(path), expected=expected)


def stored_input_size(path: str | os.PathLike[str]) -> int | None:
    """The input size recorded in a multipose encoder ``.pt``, or None when the file cannot tell (the
    encoder loader reports a broken file properly when the run loads it)."""
    try:
        return int(load_checkpoint(path)["encoder_config"]["image_size"])
    except Exception:  # noqa: BLE001 - garbage makes the unpickler raise anything; the loader reports it
        return None
