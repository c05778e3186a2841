"""Dataset and rotation files: the original's pickles and our ``.npz``.

Formats (rotations are OpenCV / BOP model-to-camera everywhere, as the original's pickles store them;
see DESIGN.md):

- **npz** (``generate_dataset.py``; read with ``allow_pickle=False``): ``images`` uint8
  ``[N, S, S, 3]`` RGB, ``Rs`` float32 ``[N, 3, 3]``, ``ts`` float32 ``[N, 3]`` (mm), ``Ks`` float32
  ``[N, 3, 3]`` (the crop's intrinsics, integer pixel coordinates = pixel centres), ``masks`` bool
  ``[N, S, S]`` (object silhouette before augmentation and occlusion) and ``meta``, a JSON string
  with ``config`` (the resolved INI), ``mesh`` (path of the rendered model) and ``seed``.
- **pickle** (the original's): ``{"Rs": [R (3, 3), ...], "images": [image (S, S, 3), ...]}``, RGB,
  uint8 (floats in [0, 255] or [0, 1] are read too), protocol 2.
- **rotation files** for ``VIEW_SAMPLING``: a ``.npy`` of ``[N, 3, 3]`` or such a pickle (only
  ``Rs`` is needed).

Pickles can run code when loaded: read only files you trust. Every problem with a file raises
:class:`multipose.infra.errors.DataError` with a one-line message naming it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from multipose.infra.atomic import atomic_open, atomic_write_bytes
from multipose.infra.errors import DataError
from multipose.infra.records import TensorRecord
from multipose.infra.safe_pickle import ForbiddenPickle, load_arrays_only

logger = logging.getLogger(__name__)

__all__ = [
    "NPZ_FORMAT",
    "PICKLE_SUFFIXES",
    "Batch",
    "SampleSet",
    "check_rotations",
    "load_rotations",
    "load_samples",
    "load_sample_files",
    "save_samples",
]

#: ``meta["format"]`` of our ``.npz`` files.
NPZ_FORMAT = "multipose-samples-v1"
#: File name endings read as pickles.
PICKLE_SUFFIXES = (".p", ".pkl", ".pickle")


@dataclass(frozen=True, eq=False)
class Batch(TensorRecord):
    """``B`` samples on one device, what training and validation consume.

    Attributes:
        image: ``(B, 3, S, S)`` float RGB in ``[0, 1]``, the encoder's input.
        R: ``(B, 3, 3)`` model-to-camera rotations (OpenCV).
        t: ``(B, 3)`` translations (mm), K: ``(B, 3, 3)`` crop intrinsics, mask: ``(B, S, S)`` bool clean
            silhouettes; None where unknown.
        index: ``(B,)`` int64 rows of the sampler's rotation pool (the view cache) each sample was drawn
            from (training batches: hard-sample mining reports losses against them), or None.
        target: ``(B, 3, S, S)`` float the reconstruction target of each sample (encoder pretraining: the
            clean, centred, headlit image of the same rotation), or None.
        objects: ``(B,)`` int64 the object of each sample (batches of several objects), or None: one object.
        pbr: ``(B,)`` int64 the row of the PBR index each sample was cut from, -1 for rendered samples
            (:mod:`multipose.data.pbr`), or None: no PBR crops.
    """

    image: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor | None = None
    K: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    index: torch.Tensor | None = None
    target: torch.Tensor | None = None
    objects: torch.Tensor | None = None
    pbr: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class SampleSet(TensorRecord):
    """A set of image samples (CPU tensors).

    Attributes:
        images: ``(N, 3, S, S)`` float32 RGB in ``[0, 1]``.
        R: ``(N, 3, 3)`` float32 model-to-camera rotations (OpenCV).
        t: ``(N, 3)`` float32 translations in mm, or None (the original's pickles have none).
        K: ``(N, 3, 3)`` float32 crop intrinsics, or None.
        mask: ``(N, S, S)`` bool clean silhouettes, or None.
        meta: provenance (``config``, ``mesh``, ``seed``, ...); empty for pickles.
        ids: ``(N, 3)`` int64 BOP ``scene_id, im_id, obj_id`` of each crop, or None (a pickle written by
            the original's ``bop2pickle.py`` or ``generate_dataset.py --from-bop`` has them).
        t_scene: ``(N, 3)`` float32 the instance's translation in its scene (mm; such a pickle's ``ts``).
        R_predicted: ``(N, 3, 3)`` float32 rotations estimated by some method (a pickle's
            ``Rs_predicted``, which the original's ``eval-pickle.py`` exported), or None.
    """

    images: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor | None = None
    K: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    ids: torch.Tensor | None = None
    t_scene: torch.Tensor | None = None
    R_predicted: torch.Tensor | None = None

    SHARED = frozenset({"meta"})

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4 or self.images.shape[1] != 3 or self.images.shape[2] != self.images.shape[3]:
            raise ValueError(f"images must be (N, 3, S, S), got {tuple(self.images.shape)}")
        self.check_shapes({"R": (n, 3, 3), "t": (n, 3), "K": (n, 3, 3), "mask": (n, *self.images.shape[2:]),
                           "ids": (n, 3), "t_scene": (n, 3), "R_predicted": (n, 3, 3)})

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def rows(self, index: slice | list[int]) -> SampleSet:
        """The samples at ``index`` (a slice or a list of row numbers), ``meta`` kept."""
        return self.take(index if isinstance(index, slice) else torch.as_tensor(index))

    def batches(self, batch_size: int, device: torch.device | str = "cpu") -> Iterator[Batch]:
        """The samples in order as :class:`Batch` es of ``batch_size`` (``t``, ``K``, ``mask`` where
        known), on ``device``."""
        for start in range(0, len(self), batch_size):
            part = slice(start, start + batch_size)
            known = {name: getattr(self, name) for name in ("t", "K", "mask")}
            yield Batch(image=self.images[part].to(device), R=self.R[part].to(device),
                        **{name: v[part].to(device) for name, v in known.items() if v is not None})


# --------------------------------------------------------------------------------------------------
# Rotations


def check_rotations(R: np.ndarray, source: str, tolerance: float = 1e-3) -> np.ndarray:
    """``R`` as float64 ``(N, 3, 3)`` after checking it holds proper rotation matrices; raises
    :class:`DataError` naming ``source`` and the first bad entry otherwise."""
    R = np.asarray(R)
    if R.ndim != 3 or R.shape[1:] != (3, 3) or R.shape[0] == 0:
        raise DataError(
            f"{source}: expected rotations of shape [N, 3, 3] with N >= 1, got shape {list(R.shape)}"
        )
    if not np.issubdtype(R.dtype, np.number):
        raise DataError(f"{source}: rotations must be numbers, got dtype {R.dtype}")
    R = R.astype(np.float64)
    bad_finite = ~np.isfinite(R).all(axis=(1, 2))
    orth = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(np.where(np.isfinite(R), R, 0.0))
    bad = bad_finite | (orth > tolerance) | (det < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: entry {i} (of {len(R)}) is not a rotation matrix (orthonormal, det +1); "
            f"{int(bad.sum())} bad entries; store OpenCV model-to-camera rotations"
        )
    return R


def _load_pickle(path: Path) -> Any:
    """A pickle read without running code from it (:mod:`multipose.infra.safe_pickle`: NumPy arrays in plain
    containers; Python 2 pickles too)."""
    try:
        with open(path, "rb") as f:
            return load_arrays_only(f)
    except ForbiddenPickle as exc:
        raise DataError(f"{path}: refused to unpickle: {exc}") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a pickle file") from None
    except Exception as exc:  # unpickling raises anything from EOFError to ModuleNotFoundError
        raise DataError(
            f"{path}: cannot read the pickle ({type(exc).__name__}: {str(exc)[:120]}); "
            "it may be truncated or not a pickle"
        ) from None


def _pickle_rotations(data: Any, path: Path) -> np.ndarray:
    if not isinstance(data, dict) or "Rs" not in data:
        kind = f"a dict with keys {sorted(map(str, data))[:6]}" if isinstance(data, dict) else type(data).__name__
        raise DataError(f'{path}: expected the original\'s pickle format {{"Rs": [...], ...}}, got {kind}')
    try:
        Rs = np.stack([
            np.asarray(r.detach().cpu().numpy() if isinstance(r, torch.Tensor) else r, dtype=np.float64).reshape(3, 3)
            for r in data["Rs"]
        ])
    except (ValueError, TypeError) as exc:
        raise DataError(f'{path}: "Rs" must be a list of 3x3 matrices ({exc})') from None
    return check_rotations(Rs, str(path))


def load_rotations(path: str | os.PathLike) -> torch.Tensor:
    """Rotations from a ``.npy`` ``[N, 3, 3]`` or an original-format pickle: ``(N, 3, 3)`` float32."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            R = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"{path}: rotation file not found; check [Training] VIEW_SAMPLING") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read the .npy rotation file ({str(exc)[:120]})") from None
        R = check_rotations(R, str(path))
    elif path.suffix.lower() in PICKLE_SUFFIXES:
        if not path.exists():
            raise DataError(f"{path}: rotation file not found; check [Training] VIEW_SAMPLING")
        R = _pickle_rotations(_load_pickle(path), path)
    else:
        raise DataError(f"{path}: rotation files must be .npy or a pickle ({', '.join(PICKLE_SUFFIXES)})")
    return torch.from_numpy(R).float()


# --------------------------------------------------------------------------------------------------
# Sample sets


def _images_to_float(images: np.ndarray, source: str) -> torch.Tensor:
    """``(N, S, S, 3)`` uint8 or float (in [0, 1] or [0, 255]) -> ``(N, 3, S, S)`` float32 in [0, 1]."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise DataError(f"{source}: expected square RGB images [N, S, S, 3], got shape {list(images.shape)}")
    if images.dtype == np.uint8:
        out = torch.from_numpy(images.astype(np.float32) / 255.0)
    elif np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise DataError(f"{source}: images contain NaN or infinite values")
        scale = 255.0 if images.max(initial=0.0) > 1.0 + 1e-6 else 1.0
        out = torch.from_numpy(np.clip(images.astype(np.float32) / scale, 0.0, 1.0))
    else:
        raise DataError(f"{source}: images must be uint8 or float, got dtype {images.dtype}")
    return out.permute(0, 3, 1, 2).contiguous()


def _load_npz(path: Path) -> SampleSet:
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            missing = {"images", "Rs"} - set(npz.files)
            if missing:
                raise DataError(
                    f"{path}: not a multipose dataset file: missing arrays {sorted(missing)} "
                    "(expected images, Rs, ts, Ks, masks, meta; write one with generate_dataset.py)"
                )
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except FileNotFoundError:
        raise DataError(f"{path}: dataset file not found; check the path") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read the .npz dataset file ({str(exc)[:120]}); it may be truncated") from None
    images = _images_to_float(arrays["images"], str(path))
    n = images.shape[0]
    R = torch.from_numpy(check_rotations(arrays["Rs"], str(path))).float()
    if R.shape[0] != n:
        raise DataError(f"{path}: {n} images but {R.shape[0]} rotations")
    extra: dict[str, torch.Tensor | None] = {}
    for key, name, shape in (("ts", "t", (n, 3)), ("Ks", "K", (n, 3, 3)), ("masks", "mask", (n, *images.shape[2:]))):
        if key not in arrays:
            extra[name] = None
            continue
        value = arrays[key]
        if tuple(value.shape) != shape:
            raise DataError(f"{path}: {key} has shape {list(value.shape)}, expected {list(shape)}")
        extra[name] = torch.from_numpy(value.astype(bool) if name == "mask" else value.astype(np.float32))
    meta: dict[str, Any] = {}
    if "meta" in arrays:
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError:
            raise DataError(f"{path}: its meta is not valid JSON") from None
    return SampleSet(images=images, R=R, meta=meta, **extra)


def _load_original_pickle(path: Path) -> SampleSet:
    data = _load_pickle(path)
    R = _pickle_rotations(data, path)
    if "images" not in data:
        raise DataError(f'{path}: the pickle has no "images"; a validation set needs {{"Rs": [...], "images": [...]}}')
    try:
        images = np.stack([np.asarray(im) for im in data["images"]])
    except ValueError as exc:
        raise DataError(f"{path}: the images differ in shape ({exc})") from None
    if images.ndim == 4 and images.shape[-1] == 4:
        images = images[..., :3]  # RGBA -> RGB
    if len(images) != len(R):
        raise DataError(f"{path}: {len(images)} images but {len(R)} rotations")
    extra: dict[str, torch.Tensor] = {}
    if all(k in data for k in ("scene_ids", "img_ids", "obj_ids")):
        extra["ids"] = torch.as_tensor(np.stack([np.asarray(data[k], dtype=np.int64).reshape(-1)
                                                 for k in ("scene_ids", "img_ids", "obj_ids")], axis=1))
    if "ts" in data:
        extra["t_scene"] = torch.as_tensor(np.asarray(data["ts"], dtype=np.float32).reshape(-1, 3))
    if "Rs_predicted" in data:
        extra["R_predicted"] = torch.from_numpy(
            check_rotations(
                np.stack([np.asarray(r, dtype=np.float64).reshape(3, 3) for r in data["Rs_predicted"]]),
                f"{path} (Rs_predicted)",
            )
        ).float()
    for name, value in extra.items():
        if len(value) != len(R):
            raise DataError(f"{path}: {len(value)} entries for {name} but {len(R)} rotations")
    return SampleSet(images=_images_to_float(images, str(path)), R=torch.from_numpy(R).float(),
                     ids=extra.get("ids"), t_scene=extra.get("t_scene"), R_predicted=extra.get("R_predicted"))


def load_samples(path: str | os.PathLike) -> SampleSet:
    """Read a dataset file: our ``.npz`` or the original's pickle (by file name ending)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix in PICKLE_SUFFIXES:
        return _load_original_pickle(path)
    raise DataError(
        f"{path}: unknown dataset file type {path.suffix or '(none)'!r}; expected .npz (generate_dataset.py) "
        f"or the original's pickle ({', '.join(PICKLE_SUFFIXES)})"
    )


def load_sample_files(paths: Sequence[str | os.PathLike], image_size: int | None = None) -> SampleSet:
    """Read and concatenate dataset files (``[Dataset] VALID_DATA_PATH``); images are resized to
    ``image_size`` (area interpolation) when given and different. Per-sample ``t, K, mask`` are kept
    only when every file has them and no resizing happened."""
    sets = [load_samples(p) for p in paths]
    if not sets:
        raise ValueError("no dataset files given")
    if image_size is not None:
        resized = []
        for s in sets:
            if s.image_size != image_size:
                logger.info("resizing %d images from %d to %d px", len(s), s.image_size, image_size)
                images = torch.nn.functional.interpolate(s.images, size=(image_size, image_size), mode="area")
                s = SampleSet(images=images, R=s.R, meta=s.meta)
            resized.append(s)
        sets = resized
    sizes = {s.image_size for s in sets}
    if len(sizes) > 1:
        raise DataError(f"dataset files {', '.join(map(str, paths))} hold images of different sizes {sorted(sizes)}")

    def cat(name: str) -> torch.Tensor | None:
        values = [getattr(s, name) for s in sets]
        return None if any(v is None for v in values) else torch.cat(values)

    return SampleSet(
        images=torch.cat([s.images for s in sets]),
        R=torch.cat([s.R for s in sets]),
        t=cat("t"),
        K=cat("K"),
        mask=cat("mask"),
        meta=sets[0].meta if len(sets) == 1 else {"files": [str(p) for p in paths]},
    )


def _uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """``(N, 3, S, S)`` float in [0, 1] -> ``(N, S, S, 3)`` uint8 (rounded)."""
    return (images.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_samples(path: str | os.PathLike, samples: SampleSet, fmt: str = "npz") -> Path:
    """Write ``samples`` atomically as ``fmt`` = ``"npz"`` (every field, ``meta`` as JSON) or
    ``"pickle"`` (the original's ``{"Rs", "images"}``, protocol 2). Returns the path."""
    path = Path(path)
    images = _uint8_hwc(samples.images)
    if fmt == "npz":
        arrays: dict[str, np.ndarray] = {
            "images": images,
            "Rs": samples.R.detach().cpu().numpy().astype(np.float32),
        }
        for key, value in (("ts", samples.t), ("Ks", samples.K), ("masks", samples.mask)):
            if value is not None:
                arrays[key] = value.detach().cpu().numpy()
        if "masks" in arrays:
            arrays["masks"] = arrays["masks"].astype(bool)
        arrays["meta"] = np.array(json.dumps({"format": NPZ_FORMAT, **samples.meta}))
        with atomic_open(path) as f:
            # Any: mypy checks **arrays against savez's allow_pickle: bool too; these keys are array names.
            np.savez(f, **cast(dict[str, Any], arrays))
        return path
    if fmt == "pickle":
        data = {
            "Rs": [r for r in samples.R.detach().cpu().numpy().astype(np.float32)],
            "images": [im for im in images],
        }
        buf = io.BytesIO()
        pickle.dump(data, buf, protocol=2)
        return atomic_write_bytes(path, buf.getvalue())
    raise ValueError(f"unknown format {fmt!r}; expected 'npz' or 'pickle'")
