"""The original AAE encoder weights: ``.npy`` files read (safely) and written, names and layouts mapped.

The pickled dictionary the multi-pose original loaded (the AAE's
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

Every problem (missing/unreadable file, missing or mis-shaped tensor) raises :class:`ModelFileError` with
one line naming the file and the tensor.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from multipose.infra.atomic import atomic_write_bytes
from multipose.infra.errors import ModelFileError
from multipose.infra.safe_pickle import ForbiddenPickle, load_arrays_only
from multipose.models.encoder import Encoder, EncoderConfig

__all__ = [
    "AAE_LAYOUTS",
    "aae_state_dict",
    "aae_weights_dict",
    "format_shape",
    "load_aae_npy",
    "read_aae_npy",
    "read_file_bytes",
    "save_aae_npy",
]

#: Kernel layouts of an original ``.npy`` (see the module docstring).
AAE_LAYOUTS = ("pytorch", "tensorflow")
Layout = Literal["pytorch", "tensorflow"]
_LAYOUT_NAMES = {"pytorch": "PyTorch", "tensorflow": "TensorFlow"}


# --------------------------------------------------------------------------------------------------
# Reading the original .npy safely
# --------------------------------------------------------------------------------------------------

def read_file_bytes(path: Path, what: str) -> bytes:
    """The bytes of a model file; a missing or unreadable one raises :class:`ModelFileError` naming ``what``."""
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
    fp = io.BytesIO(read_file_bytes(path, what))
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


def format_shape(shape: tuple[int, ...]) -> str:
    """``(3, 4)`` as ``[3, 4]``, for messages."""
    return "[" + ", ".join(map(str, shape)) + "]"


def _found_tensors(weights: Mapping[str, Mapping[str, Any]], scope: str, config: EncoderConfig, source: str
                   ) -> list[tuple[_Tensor, str, np.ndarray]]:
    """Every tensor ``config`` needs, found in ``weights`` under ``scope``: ``(spec, op name, array)``; a missing,
    non-float or non-finite one raises :class:`ModelFileError`."""
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
    return found


def _layout(found: list[tuple[_Tensor, str, np.ndarray]], arch: str, source: str) -> Layout:
    """The kernel layout every tensor's shape fits (``"pytorch"`` when both fit); a shape that fits neither
    raises :class:`ModelFileError` (``arch`` describes the encoder for the message)."""
    layouts: list[Layout] = ["pytorch", "tensorflow"]
    for spec, op, value in found:
        fits = [lay for lay in layouts if tuple(value.shape) == spec.shape[lay]]
        if not fits:
            if spec.key == "weights" and len(layouts) == 2:
                want = " or ".join(f"{format_shape(spec.shape[lay])} ({_LAYOUT_NAMES[lay]} layout)" for lay in layouts)
            elif spec.key == "weights":
                name = _LAYOUT_NAMES[layouts[0]]
                want = f"{format_shape(spec.shape[layouts[0]])} ({name} layout, as the file's other kernels)"
            else:
                want = format_shape(spec.shape[layouts[0]])
            raise ModelFileError(
                f"{source}: tensor '{op}' '{spec.key}' has shape {format_shape(tuple(value.shape))}, "
                f"expected {want} {arch}"
            )
        layouts = fits
    return layouts[0]


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
    found = _found_tensors(weights, scope, config, source)
    layout = _layout(found, arch, source)
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
