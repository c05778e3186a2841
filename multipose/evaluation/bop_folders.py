"""BOP-format test sets (T-LESS ``test_primesense``): the split readers (instances, BOP19 targets,
``models_info.json``); the images and crops are :mod:`multipose.evaluation.bop_images`', the AAE's pose from a box
:mod:`multipose.inference.box_pose`'.

Layout read (https://github.com/thodan/bop_toolkit/blob/master/docs/bop_datasets_format.md)::

    <split>/                      e.g. tless/test_primesense  ([Evaluation] TEST_DATA_PATH)
      000001/                     one folder per scene (6 digits)
        scene_gt.json             {"<im_id>": [{"cam_R_m2c": [9], "cam_t_m2c": [3] (mm), "obj_id": int}, ...]}
        scene_camera.json         {"<im_id>": {"cam_K": [9], "depth_scale": float, ...}}
        scene_gt_info.json        {"<im_id>": [{"bbox_obj": [x, y, w, h], "bbox_visib": [...], "visib_fract": f}, ...]}
        rgb/000000.png (or .jpg)  colour images; gray/ for greyscale datasets
        depth/000000.png          uint16; depth in mm = value * depth_scale (T-LESS: 0.1 mm units)
    <split>/../models*/models_info.json   optional: symmetries per object ("symmetries_discrete" /
                                          "symmetries_continuous"), see :func:`find_models_info`

Every ground-truth instance of ``[Evaluation] OBJ_ID`` with ``visib_fract >= MIN_VISIB_FRACT`` becomes a
test instance (the BOP targets' rule). Entries of ``scene_gt.json`` and ``scene_gt_info.json`` pair up
by position. The object is cut out with its ground-truth box ``bbox_obj`` (the whole silhouette, the
counterpart of the tight box of our training renders) exactly as training crops are made
(:mod:`multipose.data.views`): a square window of side ``PAD_FACTOR * max(w, h)`` about the box centre,
resampled to the encoder's input size; the window's intrinsics are ``K_crop = A K``.

The translation from a 2D box (:func:`~multipose.inference.box_pose.estimate_translation`) and the rotation
correction for objects off the optical axis (:func:`~multipose.inference.box_pose.correct_rotation`) are in
:mod:`multipose.inference.box_pose`. Every problem with the folder raises
:class:`~multipose.infra.errors.DataError` with a one-line message naming the file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from multipose.data.bop_files import find_image, is_scene, read_json
from multipose.infra.errors import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "BopInstance",
    "BopSplit",
    "TARGETS_FILE",
    "find_models_info",
    "read_bop19_targets",
    "read_bop_split",
    "read_models_info",
    "read_targets",
    "result_name",
    "subsample",
]

@dataclass(frozen=True)
class BopInstance:
    """One ground-truth instance of the evaluated object in one test image.

    Attributes:
        scene_id, im_id: the image; gt_index: position of the instance in the image's ``scene_gt`` list.
        obj_id: the object id.
        R: ``(3, 3)`` float64 model-to-camera rotation; t: ``(3,)`` translation (mm).
        K: ``(3, 3)`` float64 camera intrinsics; depth_scale: mm per unit of the depth PNG.
        bbox_obj: ``(4,)`` ``[x, y, w, h]`` box of the whole silhouette (pixels); bbox_visib: of its
            visible part; visib_fract: visible fraction of the silhouette (1 when not given).
        image_path: the colour (or grey) image; depth_path: the depth PNG; None when missing.
        inst_count: BOP19: the target's number of instances of the object in this image, else None.
    """

    scene_id: int
    im_id: int
    gt_index: int
    obj_id: int
    R: np.ndarray
    t: np.ndarray
    K: np.ndarray
    depth_scale: float
    bbox_obj: np.ndarray
    bbox_visib: np.ndarray
    visib_fract: float
    image_path: Path | None
    depth_path: Path | None
    inst_count: int | None = None


def _matrix(value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64).reshape(shape)
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected {int(np.prod(shape))} numbers, got {value!r}"[:300]) from None
    if not np.all(np.isfinite(array)):
        raise DataError(f"{where}: non-finite values")
    return array


@dataclass(frozen=True)
class BopSplit:
    """The test instances of one object in a BOP split folder, and what was left out.

    Attributes:
        folder: the split folder; num_scenes: its scene folders.
        instances: the instances evaluated, ordered by scene, image and instance.
        less_visible: instances skipped for ``0 < visib_fract < min_visib_fract`` (or an empty box).
        fully_occluded: instances skipped for ``visib_fract == 0`` (nothing of them to see).
        targets_per_image: BOP19: per ``(scene_id, im_id)`` the ground-truth instances to find there (an
            instance that cannot be cropped counts, as not found), else None.
    """

    folder: Path
    num_scenes: int
    instances: list[BopInstance]
    less_visible: int
    fully_occluded: int
    targets_per_image: dict[tuple[int, int], int] | None = None

    @property
    def num_targets(self) -> int | None:
        """BOP19: all the ground-truth instances to find, else None."""
        return None if self.targets_per_image is None else sum(self.targets_per_image.values())

    def bop19_images(self, num: int) -> tuple[list[BopInstance], int]:
        """BOP19 on about ``num`` targets: the instances of evenly spaced whole target images (an image keeps
        all its targets) and the number of targets in those images, uncroppable ones included."""
        assert self.targets_per_image is not None, "bop19_images needs read_bop19_targets's split"
        images = sorted(self.targets_per_image)
        total = sum(self.targets_per_image.values())
        kept = {images[i] for i in subsample(len(images), max(1, num * len(images) // max(total, 1)))}
        instances = [i for i in self.instances if (i.scene_id, i.im_id) in kept]
        if not instances:
            raise DataError(f"{self.folder}: the {len(kept)} BOP19 image(s) chosen for {num} samples hold no target "
                            "that can be cropped; raise [Evaluation] NUM_SAMPLES")
        return instances, sum(self.targets_per_image[k] for k in kept)


def read_bop_split(folder: str | os.PathLike[str], obj_id: int, min_visib_fract: float = 0.1) -> BopSplit:
    """The test instances of object ``obj_id`` in a BOP split folder; instances with ``visib_fract <
    min_visib_fract`` are skipped (and counted; fully occluded ones apart, with a warning). Reads only the
    JSON files, plain or gzipped (images are read by :func:`~multipose.evaluation.bop_images.load_bop_crops`).
    Raises :class:`DataError` for a folder without scenes, a broken or missing file, or no instance of the object."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: BOP test folder not found")
    scenes = sorted(p for p in folder.iterdir() if is_scene(p))
    if not scenes:
        raise DataError(
            f"{folder}: no scene folders with scene_gt.json; expected a BOP split folder such as "
            "tless/test_primesense (see data/README.md)"
        )
    instances: list[BopInstance] = []
    less_visible = fully_occluded = 0
    for scene in scenes:
        for inst in _scene_instances(scene, obj_id):
            if inst.visib_fract <= 0.0:
                fully_occluded += 1
            elif inst.visib_fract < min_visib_fract or inst.bbox_obj[2] <= 0 or inst.bbox_obj[3] <= 0:
                less_visible += 1
            elif inst.image_path is None:
                raise DataError(f"{folder / f'{inst.scene_id:06d}'}: no image {inst.im_id:06d} (.png/.jpg) in rgb/ "
                                "or gray/")
            else:
                instances.append(inst)
    if fully_occluded:
        logger.warning("BOP %s: %d instance(s) of object %d are fully occluded (visib_fract 0) and not evaluated",
                       folder, fully_occluded, obj_id)
    if not instances:
        raise DataError(
            f"{folder}: no instance of object {obj_id} with visib_fract >= {min_visib_fract:g} "
            f"in {len(scenes)} scene(s) ([Evaluation] OBJ_ID, MIN_VISIB_FRACT)"
        )
    logger.info("BOP %s: %d instances of object %d in %d scene(s) (%d less visible than %g skipped)",
                folder, len(instances), obj_id, len(scenes), less_visible, min_visib_fract)
    return BopSplit(folder, len(scenes), instances, less_visible, fully_occluded)


#: BOP19 estimation targets, in the dataset folder (the parent of the split folder).
TARGETS_FILE = "test_targets_bop19.json"


def read_targets(path: str | os.PathLike[str], obj_id: int) -> dict[tuple[int, int], int]:
    """``(scene_id, im_id) -> inst_count`` of object ``obj_id`` in a BOP targets file
    (``test_targets_bop19.json``: a list of ``{"scene_id", "im_id", "obj_id", "inst_count"}``)."""
    path = Path(path)
    entries = read_json(path, f"the BOP19 protocol evaluates its targets; it comes with the BOP dataset ({path.name})")
    try:
        return {(int(e["scene_id"]), int(e["im_id"])): int(e["inst_count"]) for e in entries
                if int(e["obj_id"]) == obj_id}
    except (TypeError, KeyError, ValueError):
        raise DataError(f"{path}: expected a list of {{scene_id, im_id, obj_id, inst_count}} objects") from None


def read_bop19_targets(folder: str | os.PathLike[str], obj_id: int, targets: str | os.PathLike[str] | None = None
                       ) -> BopSplit:
    """The BOP19 targets of object ``obj_id`` in a split folder: in every image of the targets file
    (default ``<folder>/../test_targets_bop19.json``), its ``inst_count`` ground-truth instances of the object
    with the largest visible fractions (BOP's rule, no visibility threshold). Instances that cannot be cropped
    (an empty box) still count in ``num_targets``."""
    folder = Path(folder)
    targets = Path(targets) if targets is not None else folder.resolve().parent / TARGETS_FILE
    wanted = read_targets(targets, obj_id)
    scenes = sorted(p for p in folder.iterdir() if is_scene(p)) if folder.is_dir() else []
    instances: list[BopInstance] = []
    per_image: dict[tuple[int, int], int] = {}
    uncroppable = 0
    for scene in scenes:
        by_image: dict[int, list[BopInstance]] = {}
        for inst in _scene_instances(scene, obj_id):
            by_image.setdefault(inst.im_id, []).append(inst)
        for im_id, found in by_image.items():
            count = wanted.get((found[0].scene_id, im_id), 0)
            chosen = sorted(found, key=lambda i: -i.visib_fract)[:count]  # stable: ties keep the file's order
            if chosen:
                per_image[(found[0].scene_id, im_id)] = len(chosen)
            for inst in chosen:
                if inst.bbox_obj[2] <= 0 or inst.bbox_obj[3] <= 0 or inst.image_path is None:
                    uncroppable += 1
                else:
                    instances.append(replace(inst, inst_count=count))
    if not instances:
        raise DataError(f"{folder}: no BOP19 target of object {obj_id} to evaluate ([Evaluation] OBJ_ID; targets in "
                        f"{targets})")
    if uncroppable:
        logger.warning("BOP %s: %d target instance(s) of object %d have no box or image: counted as not found",
                       folder, uncroppable, obj_id)
    return BopSplit(folder, len(scenes), instances, 0, 0, per_image)


def _scene_instances(scene: Path, obj_id: int) -> Iterator[BopInstance]:
    """Every ground-truth instance of ``obj_id`` in one scene folder (``image_path`` None when the image
    is missing: an error only for an instance that is evaluated)."""
    try:
        scene_id = int(scene.name)
    except ValueError:
        raise DataError(f"{scene}: a BOP scene folder name must be a number (e.g. 000001)") from None
    gt = read_json(scene / "scene_gt.json")
    cameras = read_json(scene / "scene_camera.json")
    info_path = scene / "scene_gt_info.json"
    info = read_json(info_path, "the ground-truth boxes (bbox_obj) and visible fractions come from it; "
                                 "bop_toolkit's scripts/calc_gt_info.py writes it")
    for key in sorted(gt, key=lambda k: int(k)):
        im_id = int(key)
        camera = cameras.get(key) or cameras.get(str(im_id))
        if camera is None:
            raise DataError(f"{scene / 'scene_camera.json'}: no entry for image {im_id}")
        where = f"{scene / 'scene_camera.json'} [{key}]"
        K = _matrix(camera.get("cam_K"), (3, 3), f"{where} cam_K")
        depth_path = find_image(scene, im_id, ("depth",))
        if depth_path is not None and "depth_scale" not in camera:
            raise DataError(f"{where}: no depth_scale, which the depth image {depth_path.name} needs (millimetres "
                            "per PNG unit; T-LESS: 0.1); add it to scene_camera.json")
        infos = info.get(key, [])
        for gt_index, entry in enumerate(gt[key]):
            if int(entry.get("obj_id", -1)) != obj_id:
                continue
            where = f"{scene / 'scene_gt.json'} [{key}][{gt_index}]"
            if gt_index >= len(infos):
                raise DataError(f"{info_path}: no entry {gt_index} for image {im_id}; the ground-truth boxes "
                                "(bbox_obj) come from scene_gt_info.json")
            item = infos[gt_index]
            bbox_obj = _matrix(item.get("bbox_obj"), (4,), f"{info_path} [{key}][{gt_index}] bbox_obj")
            yield BopInstance(
                scene_id=scene_id, im_id=im_id, gt_index=gt_index, obj_id=obj_id,
                R=_matrix(entry.get("cam_R_m2c"), (3, 3), f"{where} cam_R_m2c"),
                t=_matrix(entry.get("cam_t_m2c"), (3,), f"{where} cam_t_m2c"), K=K,
                depth_scale=float(camera.get("depth_scale", 1.0)), bbox_obj=bbox_obj,
                bbox_visib=_matrix(item.get("bbox_visib", bbox_obj), (4,), f"{info_path} bbox_visib"),
                visib_fract=float(item.get("visib_fract", 1.0)),
                image_path=find_image(scene, im_id, ("rgb", "gray")), depth_path=depth_path,
            )


def result_name(split: str | os.PathLike[str]) -> str:
    """``<dataset>-<split>`` of a BOP split folder for result file names (``METHOD_<dataset>-<split>.csv``,
    as bop_toolkit's ``parse_result_filename`` reads them): the dataset folder's name up to its first ``_``
    or ``-`` (``tless_bop19`` -> ``tless``), the split folder's up to its first ``_`` (``test_primesense``
    -> ``test``)."""
    split = Path(split).resolve()
    dataset = re.split(r"[_\-]", split.parent.name)[0].lower() or "bop"
    return f"{dataset}-{split.name.split('_')[0].replace('-', '') or 'test'}"


def find_models_info(folder: str | os.PathLike[str]) -> Path | None:
    """``models_info.json`` beside a split folder: ``<split>/../models*/models_info.json`` (``models``,
    ``models_cad``, ``models_eval``, ``models_reconst``, ... in name order), or None."""
    parent = Path(folder).resolve().parent
    candidates = sorted(p / "models_info.json" for p in parent.glob("models*") if p.is_dir())
    return next((p for p in candidates if p.is_file()), None)


def read_models_info(path: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    """``models_info.json``: ``{obj_id: {"diameter": ..., "symmetries_discrete": ..., ...}}``."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object keyed by object id")
    try:
        return {int(k): v for k, v in data.items()}
    except ValueError:
        raise DataError(f"{path}: keys must be object ids (numbers)") from None


def subsample(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` indices of ``range(n)``, evenly spaced (all when ``n <= limit``)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))
