"""Training crops from BOP's photorealistic images (``[Dataset] PBR_PATH``: a BOP ``train_pbr`` folder, rendered by
BlenderProc), as the original's final version used them (``multi-pose/DatasetPBR.py``), mixed with the synthetic
renders or alone.

**The index** (:func:`index_pbr`): every instance of the listed objects with ``visib_fract >= 0.5`` (the
original's rule), read from each scene's ``scene_gt.json`` and ``scene_gt_info.json`` with the BOP reader the
evaluation uses (:mod:`multipose.data.bop_files`); the images are not opened (a T-LESS PBR set is 50,000), only
each scene's ``rgb/`` listed once. Its arrays are cached in ``CACHE_DIR`` like the view cache
(:func:`save_index`, :func:`load_index`).

**A crop** (:class:`PbrCrops`), two styles:

- ``aae`` (ours, the default): as the training renders and the test crops are cut -- a square of ``PAD_FACTOR``
  times the larger side of the whole box ``bbox_obj`` about its centre moved by a random offset of up to
  ``MAX_REL_OFFSET`` of the box (the training renders' offsets), resampled bilinearly, black outside the image, then
  the training augmentation;
- ``original``: the original's -- a square of 1.2 times the visible box ``bbox_visib``, clipped at the image border
  (so stretched there), resized with nearest-neighbour sampling, no offset, no augmentation.

**The rotation** of a crop: ``corrected`` (ours): BOP's ``cam_R_m2c`` turned into the crop's view, the inverse of
the AAE's off-axis correction (:func:`~multipose.core.geometry.off_axis_correction` of ``cam_t_m2c``), which is how
the training renders show the object (on the optical axis) and how the test poses are corrected back;
``scene``: ``cam_R_m2c`` as it is (the original).

**The objects** of a batch: ``uniform`` (each sample's object drawn uniformly, as the synthetic renders draw
them) or ``instances`` (the original: every usable instance alike, so objects weigh by their instance counts).

**Decoding** (:class:`PbrMix` iterating an epoch): the epoch's instances and offsets are drawn at its start, then
cut by :class:`PbrCutter` in background ``DataLoader`` workers (``[Dataset] PBR_WORKERS``) or in this process; the
workers draw nothing, so the batches do not depend on their number.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from collections import OrderedDict
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from multipose.core.geometry import off_axis_correction
from multipose.data.augment import Augmenter
from multipose.data.bop_files import IMAGE_SUFFIXES, is_scene, read_json
from multipose.data.io import Batch
from multipose.data.views import crop_square, crop_windows
from multipose.infra.atomic import atomic_open
from multipose.infra.errors import DataError
from multipose.infra.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = ["MIN_VISIB_FRACT", "PbrCrops", "PbrCutter", "PbrIndex", "PbrMix", "index_pbr", "load_index", "save_index"]

#: The original's rule: instances less visible than this are not used.
MIN_VISIB_FRACT = 0.5
#: The original's crop: the visible box's larger side times this.
ORIGINAL_PAD = 1.2
#: Decoded images kept in memory (instances of one image are often drawn together).
_IMAGE_CACHE = 8


@dataclass(frozen=True)
class PbrIndex:
    """The usable instances of a PBR folder (CPU arrays, ``M`` instances).

    Attributes:
        images: the image files, each once; image: ``(M,)`` int64 each instance's entry of ``images``.
        object: ``(M,)`` int64 the instance's object index (the place of its id in the listed ids).
        R: ``(M, 3, 3)`` float32 ``cam_R_m2c``; t: ``(M, 3)`` float32 ``cam_t_m2c`` (mm).
        bbox_obj, bbox_visib: ``(M, 4)`` float32 BOP boxes ``[x, y, w, h]``; visib: ``(M,)`` float32.
        obj_ids: the BOP ids, in object order; counts: ``(N,)`` usable instances per object.
    """

    images: list[str]
    image: torch.Tensor
    object: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    bbox_obj: torch.Tensor
    bbox_visib: torch.Tensor
    visib: torch.Tensor
    obj_ids: tuple[int, ...]

    def __len__(self) -> int:
        return int(self.object.shape[0])

    @property
    def counts(self) -> torch.Tensor:
        return torch.bincount(self.object, minlength=len(self.obj_ids))


def _scene_images(scene: Path) -> dict[int, Path]:
    """``im_id -> file`` of a scene's ``rgb/`` folder, listed once; a JPEG/PNG mix is a :class:`DataError`."""
    folder = scene / "rgb"
    if not folder.is_dir():
        raise DataError(f"{folder}: missing (a BOP PBR scene keeps its images in rgb/)")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.isdigit()]
    kinds = {p.suffix.lower().replace("jpeg", "jpg") for p in files}
    if len(kinds) > 1:
        raise DataError(f"{folder}: a mix of {' and '.join(sorted(kinds))} images; a BOP folder has one kind (PBR: "
                        ".jpg): convert or remove the others")
    return {int(p.stem): p for p in files}


def _scene_instances(scene: Path, wanted: dict[int, int], min_visib: float) -> list[dict[str, Any]]:
    """The usable instances of one scene: ``{"image", "object", "R", "t", "bbox_obj", "bbox_visib", "visib"}``."""
    gt, info = read_json(scene / "scene_gt.json"), read_json(scene / "scene_gt_info.json",
                                                              "PBR training needs each instance's visible fraction")
    images = _scene_images(scene)
    found = []
    for key, entries in gt.items():
        infos = info.get(key)
        if infos is None or len(infos) != len(entries):
            raise DataError(f"{scene / 'scene_gt_info.json'}: image {key} has {0 if infos is None else len(infos)} "
                            f"entries, scene_gt.json {len(entries)}")
        for entry, item in zip(entries, infos, strict=True):
            obj = wanted.get(int(entry["obj_id"]))
            if obj is None or float(item.get("visib_fract", 0.0)) < min_visib:
                continue
            image = images.get(int(key))
            if image is None:
                raise DataError(f"{scene / 'rgb'}: no image {int(key):06d} for its instances in scene_gt.json")
            found.append({"image": str(image), "object": obj, "R": entry["cam_R_m2c"], "t": entry["cam_t_m2c"],
                          "bbox_obj": item["bbox_obj"], "bbox_visib": item["bbox_visib"],
                          "visib": float(item["visib_fract"])})
    return found


def index_pbr(folder: str | os.PathLike[str], obj_ids: tuple[int, ...], min_visib: float = MIN_VISIB_FRACT,
              progress: bool = True) -> PbrIndex:
    """The usable instances (``visib_fract >= min_visib``) of objects ``obj_ids`` (BOP ids, in object order) in a
    BOP PBR folder. Raises :class:`DataError` naming the file for a missing or malformed one, and naming the id
    for an object without a usable instance."""
    folder = Path(folder)
    scenes = sorted(p for p in folder.iterdir() if is_scene(p)) if folder.is_dir() else []
    if not scenes:
        raise DataError(f"{folder}: no BOP scene folders (NNNNNN/scene_gt.json); give a BOP train_pbr folder")
    wanted = {int(i): n for n, i in enumerate(obj_ids)}
    rows: list[dict[str, Any]] = []
    for scene in progress_bar(scenes, desc="indexing PBR scenes", unit="scene", disable=not progress, leave=False):
        try:
            rows += _scene_instances(scene, wanted, min_visib)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{scene}: malformed scene_gt.json / scene_gt_info.json ({exc!r})") from None
    counts = np.bincount([r["object"] for r in rows], minlength=len(obj_ids))
    for i, count in zip(obj_ids, counts, strict=True):
        if count == 0:
            raise DataError(f"{folder}: no instance of object {i} with visib_fract >= {min_visib} in its "
                            f"{len(scenes)} scenes ([Dataset] PBR_OBJ_IDS)")
    names = sorted({r["image"] for r in rows})
    where = {name: k for k, name in enumerate(names)}

    def column(key: str, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.tensor(np.asarray([r[key] for r in rows], dtype=np.float32).reshape(-1, *shape))

    return PbrIndex(images=names, image=torch.tensor([where[r["image"]] for r in rows], dtype=torch.int64),
                    object=torch.tensor([r["object"] for r in rows], dtype=torch.int64), R=column("R", (3, 3)),
                    t=column("t", (3,)), bbox_obj=column("bbox_obj", (4,)), bbox_visib=column("bbox_visib", (4,)),
                    visib=column("visib", ()).reshape(-1), obj_ids=tuple(int(i) for i in obj_ids))


def save_index(index: PbrIndex, path: str | os.PathLike[str]) -> Path:
    """The index as an ``.npz`` (arrays only), atomically."""
    arrays = {k: getattr(index, k).numpy() for k in ("image", "object", "R", "t", "bbox_obj", "bbox_visib", "visib")}
    with atomic_open(path) as f:
        np.savez(f, images=np.asarray(index.images), obj_ids=np.asarray(index.obj_ids), **arrays)
    return Path(path)


def load_index(path: str | os.PathLike[str]) -> PbrIndex:
    """An index written by :func:`save_index` (no pickles are read)."""
    with np.load(path, allow_pickle=False) as data:
        tensors = {k: torch.from_numpy(data[k]) for k in ("image", "object", "R", "t", "bbox_obj", "bbox_visib",
                                                           "visib")}
        return PbrIndex(images=[str(s) for s in data["images"]], obj_ids=tuple(int(i) for i in data["obj_ids"]),
                        **tensors)


class PbrCutter:
    """Cuts crops of a PBR index's instances (module docstring's crop styles), what the background data loader's
    workers run: ``cut(rows, offsets)`` decodes the instances' images (the last few kept decoded) and returns
    ``(n, S, S, 3)`` uint8 RGB crops, a function of its arguments only.

    Args:
        index: the usable instances; size: the crop side (pixels); pad_factor: the ``aae`` crop's window
            (``[Dataset] PAD_FACTOR``); style: ``"aae"`` or ``"original"``.
    """

    def __init__(self, index: PbrIndex, size: int, pad_factor: float, style: str) -> None:
        if style not in ("aae", "original"):
            raise ValueError(f"bad PBR crop style: {style}")
        self.index, self.size, self.pad_factor, self.style = index, int(size), float(pad_factor), style
        self._decoded: OrderedDict[int, np.ndarray] = OrderedDict()

    def cut(self, rows: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """``(n, S, S, 3)`` uint8 crops of instances ``rows (n,)``, the ``aae`` windows moved by ``offsets (n, 2)``
        (fractions of the box)."""
        crops = [self.crop(int(i), offsets[k]) for k, i in enumerate(rows.tolist())]
        return torch.from_numpy(np.stack(crops)) if crops else torch.zeros(0, self.size, self.size, 3,
                                                                           dtype=torch.uint8)

    def crop(self, i: int, offset: torch.Tensor) -> np.ndarray:
        """Instance ``i``'s crop ``(S, S, 3)`` uint8."""
        image = self._image(int(self.index.image[i]))
        if self.style == "original":
            return _original_crop(image, self.index.bbox_visib[i].tolist(), self.size)
        x, y, w, h = self.index.bbox_obj[i].tolist()
        box = torch.tensor([[x - 0.5, y - 0.5, x + w + 0.5, y + h + 0.5]], dtype=torch.float64)  # BOP's box extent
        window = crop_windows(box, offset[None].double(), self.pad_factor)[0].tolist()
        return crop_square(image, window, self.size)

    def _image(self, k: int) -> np.ndarray:
        """Image ``k`` of the index as ``(H, W, 3)`` uint8 RGB."""
        if k not in self._decoded:
            path = self.index.images[k]
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f"{path}: cannot read this PBR image")
            self._decoded[k] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if len(self._decoded) > _IMAGE_CACHE:
                self._decoded.popitem(last=False)
        return self._decoded[k]


class _Plans(torch.utils.data.Dataset[torch.Tensor | DataError]):
    """The background loader's dataset: item ``(rows, offsets)`` -> :meth:`PbrCutter.cut` (its error returned, not
    raised); its sampler is the epoch's list of plans."""

    def __init__(self, cutter: PbrCutter, plans: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.cutter, self.plans = cutter, plans

    def __getitem__(self, plan: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor | DataError:
        try:
            return self.cutter.cut(*plan)
        except DataError as exc:  # handed to the training process as it is (the loader would wrap its traceback)
            return exc

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # the sampler
        return iter(self.plans)


def _raised(crops: torch.Tensor | DataError) -> torch.Tensor:
    """A worker's crops, or its error raised here."""
    if isinstance(crops, DataError):
        raise crops
    return crops


def _ignore_stop_signals(worker: int) -> None:
    """A worker leaves Ctrl-C and SIGTERM (sent to the whole process group) to the training process, which stops
    cleanly after its batch and then ends the workers; a worker killed by them would abort the training process
    with the DataLoader's error instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class PbrCrops:
    """Batches of crops of PBR instances (module docstring), on ``device``: instances and offsets drawn by
    :meth:`plan`, cut by a :class:`PbrCutter` (in this process, or in ``workers`` background processes by
    :meth:`cut_all`), then augmented by :meth:`finish`. The workers do not draw: the crops are the same for any
    number of workers.

    Args:
        index: the usable instances; size: the crop side (pixels); pad_factor, max_rel_offset: the ``aae``
            crop's window (``[Dataset] PAD_FACTOR``, ``[Training] MAX_REL_OFFSET``).
        style: ``"aae"`` or ``"original"``; rotation: ``"corrected"`` or ``"scene"``; objects: ``"uniform"`` or
            ``"instances"``; augmenter: applied to ``aae`` crops (None: none).
        generator: draws the instances, offsets and augmentation.
        workers: background processes decoding and cutting (``[Dataset] PBR_WORKERS``; 0: this process).
    """

    def __init__(self, index: PbrIndex, size: int, pad_factor: float, max_rel_offset: float, *, style: str,
                 rotation: str, objects: str, augmenter: Augmenter | None, generator: torch.Generator,
                 device: torch.device | str = "cpu", workers: int = 0) -> None:
        if rotation not in ("corrected", "scene") or objects not in ("uniform", "instances") or workers < 0:
            raise ValueError(f"bad PBR crop settings: {rotation}, {objects}, {workers} workers")
        self.index, self.cutter = index, PbrCutter(index, size, pad_factor, style)
        self.max_rel_offset, self.objects, self.workers = float(max_rel_offset), objects, int(workers)
        self.augmenter = augmenter if style == "aae" else None
        self.generator = generator
        self.device = torch.device(device)
        self.R = index.R if rotation == "scene" else off_axis_correction(index.t).transpose(1, 2) @ index.R
        self._by_object = [torch.nonzero(index.object == n).flatten() for n in range(len(index.obj_ids))]

    def draw(self, n: int) -> torch.Tensor:
        """``n`` instances: each sample's object uniformly, then one of its instances (``instances``: any)."""
        if self.objects == "instances":
            return torch.randint(len(self.index), (n,), generator=self.generator)
        objects = torch.randint(len(self._by_object), (n,), generator=self.generator)
        sizes = torch.tensor([len(r) for r in self._by_object])[objects]
        pick = (torch.rand(n, generator=self.generator, dtype=torch.float64) * sizes).long().clamp(max=sizes - 1)
        return torch.stack([self._by_object[o][p] for o, p in zip(objects.tolist(), pick.tolist(), strict=True)]
                           ) if n else torch.zeros(0, dtype=torch.int64)

    def plan(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` instances ``rows (n,)`` and their windows' ``offsets (n, 2)``."""
        rows = self.draw(n)
        return rows, (torch.rand(n, 2, generator=self.generator) * 2 - 1) * self.max_rel_offset

    def cut_all(self, plans: list[tuple[torch.Tensor, torch.Tensor]]) -> Generator[torch.Tensor, None, None]:
        """The crops ``(n, S, S, 3)`` uint8 of each plan in turn, cut ahead by the workers (if any: started for
        these plans, and ended when the iterator is exhausted, closed, or raises)."""
        if self.workers == 0:
            yield from (self.cutter.cut(*plan) for plan in plans)
            return
        dataset = _Plans(self.cutter, plans)
        ahead = iter(torch.utils.data.DataLoader(dataset, sampler=dataset, batch_size=None, num_workers=self.workers,
                                                 worker_init_fn=_ignore_stop_signals))
        try:
            for crops in ahead:
                yield _raised(crops)
        finally:
            ahead._shutdown_workers()  # type: ignore[attr-defined]  # now, not whenever it is collected

    def finish(self, rows: torch.Tensor, crops: torch.Tensor) -> Batch:
        """The batch of instances ``rows (n,)`` cut as ``crops (n, S, S, 3)`` uint8: ``image (n, 3, S, S)``
        (augmented), ``R`` their rotations, ``objects`` their object indices, ``index`` -1 (not from the view
        cache), ``pbr`` the rows."""
        n = len(rows)
        image = crops.to(self.device).permute(0, 3, 1, 2).contiguous().float().div(255.0)
        if self.augmenter is not None and n:
            image = self.augmenter(image, self.generator)
        return Batch(image=image, R=self.R[rows].to(self.device), objects=self.index.object[rows].to(self.device),
                     index=torch.full((n,), -1, dtype=torch.int64, device=self.device), pbr=rows.to(self.device))

    def batch(self, n: int) -> Batch:
        """``n`` crops, planned, cut in this process and finished."""
        rows, offsets = self.plan(n)
        return self.finish(rows, self.cutter.cut(rows, offsets))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def _original_crop(image: np.ndarray, xywh: list[float], size: int) -> np.ndarray:
    """The original's ``extract_square_patch``: a square of 1.2 x the box's larger side about its centre, clipped at
    the image border, resized to ``size`` with nearest-neighbour sampling."""
    x, y, w, h = (int(v) for v in xywh)
    side = int(max(w, h) * ORIGINAL_PAD)
    left, right = int(max(x + w / 2 - side / 2, 0)), int(min(x + w / 2 + side / 2, image.shape[1]))
    top, bottom = int(max(y + h / 2 - side / 2, 0)), int(min(y + h / 2 + side / 2, image.shape[0]))
    return cv2.resize(image[top:bottom, left:right], (size, size), interpolation=cv2.INTER_NEAREST)


class PbrMix:
    """Training batches of which a fraction ``fraction`` are PBR crops and the rest synthetic renders, with the
    interface of :class:`~multipose.data.datasets.TrainingData` (``fraction`` 1: PBR crops alone, the original's).

    Args:
        synthetic: the synthetic pipeline (one object's, or an :class:`~multipose.data.objects.ObjectMix`); None
            when ``fraction`` is 1.
        pbr: the PBR crops; fraction: of every batch, rounded to whole samples.
        batch_size, num_samples: per epoch ``num_samples`` samples, the last batch may be smaller.
        several: the batches say each sample's object (a head of several objects).
    """

    def __init__(self, synthetic: Any, pbr: PbrCrops, fraction: float, batch_size: int, num_samples: int,
                 several: bool) -> None:
        if not 0.0 < fraction <= 1.0 or (synthetic is None and fraction < 1.0):
            raise ValueError(f"a PBR fraction in (0, 1] (1 without synthetic data), got {fraction}")
        self.synthetic, self.pbr, self.fraction = synthetic, pbr, float(fraction)
        self.batch_size, self.num_samples, self.several = int(batch_size), int(num_samples), several
        self.device = pbr.device
        self.cache = synthetic.cache if synthetic is not None else None  # a population head's table of its poses

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        """An epoch's batches; its PBR instances and offsets are drawn at its start, so that the workers can cut
        ahead (the same crops for any number of workers)."""
        if self.synthetic is not None:
            self.synthetic.start_epoch()
        sizes = [min(self.batch_size, self.num_samples - start) for start in range(0, self.num_samples,
                                                                                   self.batch_size)]
        plans = [self.pbr.plan(self._pbr_rows(n)) for n in sizes]
        cut = self.pbr.cut_all(plans)
        try:
            for n, (rows, _), crops in zip(sizes, plans, cut, strict=True):
                yield self._assemble(n, self.pbr.finish(rows, crops))
        finally:
            cut.close()  # an epoch left early (a stop, an error) ends its workers

    def batch(self, n: int | None = None) -> Batch:
        """``n`` samples: ``round(fraction * n)`` PBR crops (cut in this process) after the synthetic ones."""
        n = self.batch_size if n is None else int(n)
        return self._assemble(n, self.pbr.batch(self._pbr_rows(n)))

    def _pbr_rows(self, n: int) -> int:
        return n if self.synthetic is None else int(round(self.fraction * n))

    def _assemble(self, n: int, pbr: Batch) -> Batch:
        """The batch of ``n`` samples ending with the PBR crops ``pbr``: the synthetic rows drawn before them
        (``pbr`` -1 there), ``index`` -1 and ``pbr`` the instance for PBR rows; ``objects`` for several objects."""
        k = len(pbr.R)
        parts = []
        if k < n:
            rendered = self.synthetic.batch(n - k)
            minus = torch.full((n - k,), -1, dtype=torch.int64, device=self.device)
            parts.append(Batch(image=rendered.image, R=rendered.R, index=rendered.index, pbr=minus, objects=(
                rendered.objects if rendered.objects is not None else torch.zeros_like(minus))))
        if k > 0:
            parts.append(pbr)
        batch = Batch.cat(parts)
        return batch if self.several else replace(batch, objects=None)

    def update(self, batch: Batch, per_sample_loss: torch.Tensor) -> None:
        """The synthetic rows' losses to the synthetic pipeline (hard-sample mining); PBR rows have none to keep."""
        if self.synthetic is None or batch.index is None:
            return
        rows = torch.nonzero(batch.index >= 0, as_tuple=True)[0]
        if len(rows):
            self.synthetic.update(batch.take(rows), per_sample_loss[rows.to(per_sample_loss.device)])

    def state_dict(self) -> dict[str, Any]:
        return {"pbr": self.pbr.state_dict(),
                "synthetic": self.synthetic.state_dict() if self.synthetic is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pbr.load_state_dict(state["pbr"])
        if self.synthetic is not None:
            self.synthetic.load_state_dict(state["synthetic"])
