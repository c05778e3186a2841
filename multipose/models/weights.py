"""Reading and writing encoder weights: the original AAE ``.npy`` dictionary and our ``.pt`` file.

``[Dataset] ENCODER_WEIGHTS`` takes one of:

- **an original ``.npy``** -- the pickled dictionary the multi-pose original loaded (the AAE's
  TensorFlow encoder converted with MMdnn). It maps op names to dictionaries of NumPy arrays. Names
  are matched by suffix after one scope prefix (``<scope>/``, e.g. ``obj1_18_v2/``; it varies by
  model). For an encoder with ``n`` convolutions (``i = 0 .. n-1``; TensorFlow numbers repeated layer
  names ``conv2d``, ``conv2d_1``, ``conv2d_2``, ...) the names and keys read are::

      <scope>/conv2d/Conv2D, <scope>/conv2d_<i>/Conv2D            weights, bias
      <scope>/batch_normalization/FusedBatchNorm,                 scale, bias, mean, var
      <scope>/batch_normalization_<i>/FusedBatchNorm              (or .../FusedBatchNormV3; only
                                                                   with batch norm)
      <scope>/dense/MatMul                                        weights, bias

  The scope is that of the shortest name ending in ``conv2d/Conv2D`` (a full AAE export also holds
  the decoder's layers one scope deeper); other entries are ignored. Kernels are accepted in either
  layout, decided once per file: **PyTorch** (what MMdnn's PyTorch emitter writes and the original
  copied straight into ``nn.Conv2d`` / ``nn.Linear``: conv ``[out, in, kh, kw]``, dense ``[out, in]``)
  or **TensorFlow** (MMdnn's IR / raw TF: conv ``HWIO [kh, kw, in, out]``, dense ``[in, out]``). Either
  way the dense layer's inputs are in NHWC flatten order, as :class:`~multipose.models.Encoder` flattens.
  Only NumPy arrays in dictionaries are unpickled (a restricted unpickler), so a file cannot run code.
  The architecture comes from ``[Encoder]`` (``ARCH: auto`` means ``aae`` for a ``.npy``).
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from multipose.checkpoint import atomic_torch_save, atomic_write_bytes
from multipose.config import Config, crop_size, encoder_arch
from multipose.errors import ConfigError, UserInputError
from multipose.mesh import file_sha256
from multipose.models.encoder import PRESETS, Encoder, EncoderConfig
from multipose.runs import encoder_weights_path
from multipose.safe_pickle import ForbiddenPickle, load_arrays_only

__all__ = [
    "AAE_LAYOUTS",
    "ENCODER_FORMAT",
    "ModelFileError",
    "aae_state_dict",
    "aae_weights_dict",
    "encoder_checkpoint",
    "encoder_digest",
    "encoder_mismatch",
    "encoder_from_checkpoint",
    "load_aae_npy",
    "load_encoder",
    "stored_input_size",
    "with_encoder_crop_size",
    "load_encoder_pt",
    "read_aae_npy",
    "read_torch_file",
    "requested_encoder_config",
    "save_aae_npy",
    "save_encoder",
]

#: Kernel layouts of an original ``.npy`` (see the module docstring).
AAE_LAYOUTS = ("pytorch", "tensorflow")
#: ``format`` tag of our encoder ``.pt`` files.
ENCODER_FORMAT = "multipose-encoder"
_ENCODER_VERSION = 1
Layout = Literal["pytorch", "tensorflow"]
_LAYOUT_NAMES = {"pytorch": "PyTorch", "tensorflow": "TensorFlow"}


class ModelFileError(UserInputError):
    """A weights, encoder or codebook file that cannot be used; the message names the file and tensor."""


# --------------------------------------------------------------------------------------------------
# Reading the original .npy safely
# --------------------------------------------------------------------------------------------------

def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a folder, expected {what}") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def read_aae_npy(path: str | os.PathLike[str]) -> dict[str, dict[str, np.ndarray]]:
    """The weights dictionary of an original AAE ``.npy``: ``{op name: {key: array}}``.

    Reads ``np.save``-d pickled dictionaries (``.npy`` format 1.0/2.0; Python 2 pickles too) without
    running code from the file; bytes keys are decoded. Raises :class:`ModelFileError`.
    """
    path = Path(path)
    what = "original AAE weights (.npy)"
    fp = io.BytesIO(_read_bytes(path, what))
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ModelFileError(f"{path}: unsupported .npy format version {version[0]}.{version[1]}")
    except ValueError as exc:
        raise ModelFileError(f"{path}: not a .npy file ({exc}); expected {what}") from None
    if not dtype.hasobject:
        raise ModelFileError(
            f"{path}: holds a plain {dtype} array of shape {tuple(shape)}, not a pickled weights dictionary"
        )
    try:
        array = load_arrays_only(fp)
    except ForbiddenPickle as exc:
        raise ModelFileError(f"{path}: refused to unpickle: {exc}") from None
    except Exception as exc:  # truncated or corrupt pickle: EOFError, struct/Value/TypeError, ...
        raise ModelFileError(f"{path}: truncated or corrupt .npy ({type(exc).__name__}: {exc})") from None
    obj = array.item() if isinstance(array, np.ndarray) and array.shape == () else array
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: holds a {type(obj).__name__}, expected a dictionary of weights by op name")
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, entry in obj.items():
        name = name.decode("latin1") if isinstance(name, bytes) else str(name)
        if isinstance(entry, dict):
            entry = {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in entry.items()}
        out[name] = entry
    return out


# --------------------------------------------------------------------------------------------------
# Original names <-> our state dict
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tensor:
    """One tensor of the original dictionary and where it goes in our state dict."""

    ops: tuple[str, ...]  # accepted op names, without the scope prefix
    key: str  # key in the op's dictionary
    state_key: str
    shape: dict[str, tuple[int, ...]]  # layout -> shape in the file
    what: str


def _numbered(base: str, i: int) -> str:
    return base if i == 0 else f"{base}_{i}"


def _aae_tensors(config: EncoderConfig) -> list[_Tensor]:
    k, n = config.kernel_size, len(config.channels)
    tensors: list[_Tensor] = []
    for i, (cin, cout) in enumerate(zip((3, *config.channels[:-1]), config.channels, strict=True)):
        conv = (f"{_numbered('conv2d', i)}/Conv2D",)
        what = f"convolution {i + 1} of {n}"
        tensors.append(_Tensor(conv, "weights", f"convs.{i}.weight",
                               {"pytorch": (cout, cin, k, k), "tensorflow": (k, k, cin, cout)}, what))
        tensors.append(_Tensor(conv, "bias", f"convs.{i}.bias", {"pytorch": (cout,), "tensorflow": (cout,)}, what))
        if config.batch_norm:
            bn = tuple(f"{_numbered('batch_normalization', i)}/{op}" for op in ("FusedBatchNorm", "FusedBatchNormV3"))
            for key, attr in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"), ("var", "running_var")):
                tensors.append(_Tensor(bn, key, f"norms.{i}.{attr}", {"pytorch": (cout,), "tensorflow": (cout,)},
                                       f"batch norm {i + 1} of {n}"))
    d, f = config.latent_size, config.flat_features
    tensors.append(_Tensor(("dense/MatMul",), "weights", "dense.weight",
                           {"pytorch": (d, f), "tensorflow": (f, d)}, "dense layer"))
    tensors.append(_Tensor(("dense/MatMul",), "bias", "dense.bias", {"pytorch": (d,), "tensorflow": (d,)},
                           "dense layer"))
    return tensors


def _scope(weights: Mapping[str, Any], source: str) -> str:
    first = "conv2d/Conv2D"
    found = [name for name in weights if name == first or name.endswith("/" + first)]
    if not found:
        raise ModelFileError(
            f"{source}: missing '<scope>/{first}' (the first convolution); not an AAE encoder weights file?"
        )
    shortest = min(len(name) for name in found)
    best = sorted(name for name in found if len(name) == shortest)
    if len(best) > 1:
        raise ModelFileError(f"{source}: ambiguous scope: both '{best[0]}' and '{best[1]}' are a first convolution")
    return best[0][: -len(first)]


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def aae_state_dict(
    weights: Mapping[str, Mapping[str, Any]], config: EncoderConfig, *, source: str = "<weights>"
) -> tuple[dict[str, torch.Tensor], Layout]:
    """Convert an original weights dictionary to an :class:`Encoder` state dict for ``config``.

    Returns ``(state_dict, layout)``; ``layout`` is the kernel layout found (``"pytorch"`` when the
    shapes fit both). ``source`` names the file in errors (:class:`ModelFileError`).
    """
    scope = _scope(weights, source)
    arch = f"for an encoder with {config.describe()} ([Encoder])"
    names = {name for name in weights if name.startswith(scope)}
    if not config.batch_norm:
        bn = sorted(n for n in names if n[len(scope):].startswith("batch_normalization"))
        if bn:
            raise ModelFileError(
                f"{source}: has batch norm tensors ('{bn[0]}'), but the encoder is built without batch norm; "
                "set [Encoder] BATCH_NORMALIZATION: true"
            )
    found: list[tuple[_Tensor, str, np.ndarray]] = []
    for spec in _aae_tensors(config):
        op = next((scope + o for o in spec.ops if scope + o in weights), scope + spec.ops[0])
        entry = weights.get(op)
        if not isinstance(entry, Mapping) or spec.key not in entry:
            hint = ""
            if spec.state_key.startswith("norms.") and op not in weights:
                hint = " (trained without batch norm? set [Encoder] BATCH_NORMALIZATION: false)"
            raise ModelFileError(f"{source}: missing tensor '{op}' '{spec.key}' ({spec.what}){hint}")
        value = entry[spec.key]
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            raise ModelFileError(
                f"{source}: tensor '{op}' '{spec.key}' is a {type(value).__name__}"
                f"{' of ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}, expected a float array"
            )
        if not np.isfinite(value).all():
            raise ModelFileError(f"{source}: tensor '{op}' '{spec.key}' holds NaN or infinite values")
        found.append((spec, op, value))
    layouts: list[Layout] = ["pytorch", "tensorflow"]
    for spec, op, value in found:
        fits = [lay for lay in layouts if tuple(value.shape) == spec.shape[lay]]
        if not fits:
            if spec.key == "weights" and len(layouts) == 2:
                want = " or ".join(f"{_fmt(spec.shape[lay])} ({_LAYOUT_NAMES[lay]} layout)" for lay in layouts)
            elif spec.key == "weights":
                name = _LAYOUT_NAMES[layouts[0]]
                want = f"{_fmt(spec.shape[layouts[0]])} ({name} layout, as the file's other kernels)"
            else:
                want = _fmt(spec.shape[layouts[0]])
            raise ModelFileError(
                f"{source}: tensor '{op}' '{spec.key}' has shape {_fmt(tuple(value.shape))}, expected {want} {arch}"
            )
        layouts = fits
    layout = layouts[0]
    state: dict[str, torch.Tensor] = {}
    for spec, _, value in found:
        tensor = torch.from_numpy(np.array(value, dtype=np.float32))
        if layout == "tensorflow" and spec.key == "weights":
            tensor = tensor.permute(3, 2, 0, 1) if tensor.dim() == 4 else tensor.t()
        state[spec.state_key] = tensor.contiguous()
    if config.batch_norm:
        for i in range(len(config.channels)):
            state[f"norms.{i}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state, layout


def load_aae_npy(path: str | os.PathLike[str], config: EncoderConfig) -> Encoder:
    """An :class:`Encoder` for ``config`` with the weights of an original ``.npy``, in eval mode."""
    state, _ = aae_state_dict(read_aae_npy(path), config, source=os.fspath(path))
    encoder = Encoder(config)
    encoder.load_state_dict(state, strict=True)
    return encoder.eval()


def aae_weights_dict(
    encoder: Encoder, *, scope: str = "encoder", layout: Layout = "pytorch"
) -> dict[str, dict[str, np.ndarray]]:
    """The original ``.npy`` dictionary of ``encoder`` (float32 arrays; names as :func:`read_aae_npy` reads).

    ``scope``: the name prefix (``""`` for none); ``layout``: ``"pytorch"`` (as MMdnn's PyTorch emitter
    writes, the original's format) or ``"tensorflow"`` (HWIO / ``[in, out]`` kernels). Batch norm ops are
    written as ``.../FusedBatchNorm``.
    """
    if layout not in AAE_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(AAE_LAYOUTS)}, got {layout!r}")
    prefix = f"{scope.strip('/')}/" if scope.strip("/") else ""
    state = encoder.state_dict()
    out: dict[str, dict[str, np.ndarray]] = {}
    for spec in _aae_tensors(encoder.config):
        value = state[spec.state_key].detach().to("cpu", torch.float32)
        if layout == "tensorflow" and spec.key == "weights":
            value = value.permute(2, 3, 1, 0) if value.dim() == 4 else value.t()
        out.setdefault(prefix + spec.ops[0], {})[spec.key] = np.ascontiguousarray(value.numpy())
    return out


def save_aae_npy(
    encoder: Encoder, path: str | os.PathLike[str], *, scope: str = "encoder", layout: Layout = "pytorch"
) -> Path:
    """Write :func:`aae_weights_dict` as an original-style ``.npy`` (``np.save`` of the dictionary), atomically."""
    buf = io.BytesIO()
    np.save(buf, np.array(aae_weights_dict(encoder, scope=scope, layout=layout), dtype=object), allow_pickle=True)
    return atomic_write_bytes(path, buf.getvalue())


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


def _stored_config(payload: Any, source: str) -> EncoderConfig:
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
    config = _stored_config(payload, source)
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
            got = _fmt(tuple(value.shape)) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
            raise ModelFileError(
                f"{source}: tensor '{key}' has shape {got}, expected {_fmt(tuple(ref.shape))} "
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
    data = _read_bytes(path, what)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - garbage makes the unpickler raise anything (even IndexError)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a readable PyTorch file ({reason[:160]})") from None


def load_encoder_pt(path: str | os.PathLike[str], *, expected: EncoderConfig | None = None) -> Encoder:
    """Read our ``.pt`` (:func:`save_encoder`): an :class:`Encoder` in eval mode, on the CPU."""
    path = Path(path)
    return encoder_from_checkpoint(read_torch_file(path), source=os.fspath(path), expected=expected)


# --------------------------------------------------------------------------------------------------
# From the config
# --------------------------------------------------------------------------------------------------


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


def stored_input_size(path: str | os.PathLike[str]) -> int | None:
    """The input size recorded in a multipose encoder ``.pt``, or None when the file cannot tell (the
    encoder loader reports a broken file properly when the run loads it)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return int(payload["encoder_config"]["image_size"])
    except Exception:  # noqa: BLE001 - garbage makes the unpickler raise anything; the loader reports it
        return None


def with_encoder_crop_size(cfg: Config) -> Config:
    """``cfg`` with an empty ``[Dataset] CROP_SIZE`` set to the input size stored in its encoder file when
    that differs from the ``[Encoder] ARCH`` preset's (``ARCH: auto`` and ``ENCODER_WEIGHTS``, or ``auto``'s
    ``<OUTPUT_PATH>/encoder.pt``, an existing multipose ``.pt``: e.g. an encoder copied from another run);
    else ``cfg`` itself. The entry scripts call it once after loading the config
    (:func:`multipose.cli.run`), so the file is read once, not on every :func:`~multipose.config.crop_size`."""
    weights = encoder_weights_path(cfg)
    if cfg.Dataset.CROP_SIZE is not None or cfg.Encoder.ARCH != "auto":
        return cfg
    if weights.suffix.lower() not in (".pt", ".pth") or not weights.is_file():
        return cfg
    stored = stored_input_size(weights)
    if stored is None or stored == crop_size(cfg):
        return cfg
    return cfg.with_value("Dataset", "CROP_SIZE", stored, f"{weights} (the encoder's input size)")


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
    stored = _stored_config(payload, os.fspath(path))
    _check_data_mesh(payload, cfg, path)
    return encoder_from_checkpoint(payload, source=os.fspath(path), expected=requested_encoder_config(cfg, stored))


def _check_data_mesh(payload: Any, cfg: Config, path: Path) -> None:
    """Refuse an encoder pretrained on another CAD model than ``[Dataset] MODEL_PATH_DATA`` (known from
    the ``data_mesh_sha256`` that pretraining stores; files without it are not checked): an AAE
    encoder's code describes the views of the object it was trained on, nothing else."""
    metadata = payload.get("metadata", {}) if isinstance(payload, dict) else {}
    trained_on = metadata.get("data_mesh_sha256") if isinstance(metadata, dict) else None
    model = cfg.Dataset.MODEL_PATH_DATA
    if trained_on is None or not Path(model).is_file() or file_sha256(model) == trained_on:
        return
    raise ModelFileError(
        f"{cfg.origin('Dataset', 'ENCODER_WEIGHTS')}: {path} was pretrained on the CAD model "
        f"{metadata.get('data_mesh', '?')}, but [Dataset] MODEL_PATH_DATA is {model} (another file); pretrain "
        "an encoder for this model with ENCODER_WEIGHTS: auto (train.py does it first) or train_encoder.py"
    )
