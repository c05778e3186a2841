"""BOP-format test sets (T-LESS ``test_primesense``), cropped and posed the Augmented-Autoencoder way.

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

Translation, as the AAE (Sundermeyer et al., ECCV 2018, ``auto_pose/ae/codebook.py``) estimates it from
a 2D box (:func:`estimate_translation`), and the rotation correction for objects off the optical axis
(:func:`correct_rotation`) are here too. Every problem with the folder raises
:class:`~multipose.infra.errors.DataError` with a one-line message naming the file.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from multipose.data.views import crop_intrinsics, crop_windows, tight_boxes
from multipose.infra.errors import DataError
from multipose.infra.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = [
    "BopCrops",
    "BopInstance",
    "BopSplit",
    "TARGETS_FILE",
    "bop_split_pickle",
    "correct_rotation",
    "crop_intrinsics_batch",
    "crop_like_bop2pickle",
    "box_extent",
    "crop_square",
    "estimate_translation",
    "find_image",
    "find_models_info",
    "poses_from_boxes",
    "is_bop_split",
    "load_bop_crops",
    "read_bop19_targets",
    "read_bop_split",
    "read_depth",
    "read_models_info",
    "read_rgb",
    "read_targets",
    "result_name",
    "subsample",
    "xywh_to_xyxy",
]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


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


def _json_file(path: Path) -> Path | None:
    """``path``, or its gzipped ``path.gz`` (BOP ships some large JSON files gzipped), or None."""
    gz = path.with_name(path.name + ".gz")
    return path if path.is_file() else gz if gz.is_file() else None


def _is_scene(folder: Path) -> bool:
    return folder.is_dir() and _json_file(folder / "scene_gt.json") is not None


def is_bop_split(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding at least one scene folder with a ``scene_gt.json`` (or
    ``scene_gt.json.gz``)."""
    path = Path(path)
    return path.is_dir() and any(_is_scene(p) for p in path.iterdir())


def _read_json(path: Path, why: str = "every BOP scene folder needs it") -> Any:
    """A BOP JSON file, or its ``.gz``; a missing one is a :class:`DataError` saying ``why`` it is needed."""
    found = _json_file(path)
    if found is None:
        raise DataError(f"{path}: missing ({why})")
    try:
        if found.suffix == ".gz":
            with gzip.open(found, "rt", encoding="utf-8") as f:
                return json.load(f)
        return json.loads(found.read_text(encoding="utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{found}: not a readable JSON file ({exc})") from None


def _matrix(value: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64).reshape(shape)
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected {int(np.prod(shape))} numbers, got {value!r}"[:300]) from None
    if not np.all(np.isfinite(array)):
        raise DataError(f"{where}: non-finite values")
    return array


def find_image(folder: Path, im_id: int, kinds: Sequence[str]) -> Path | None:
    """``<folder>/<kind>/<im_id:06d>.<png|jpg|...>`` for the first ``kind`` that has it, or None."""
    for kind in kinds:
        for suffix in _IMAGE_SUFFIXES:
            path = folder / kind / f"{im_id:06d}{suffix}"
            if path.is_file():
                return path
    return None


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
    JSON files, plain or gzipped (images are read by :func:`load_bop_crops`). Raises :class:`DataError`
    for a folder without scenes, a broken or missing file, or no instance of the object."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: BOP test folder not found")
    scenes = sorted(p for p in folder.iterdir() if _is_scene(p))
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
    entries = _read_json(path, f"the BOP19 protocol evaluates its targets; it comes with the BOP dataset ({path.name})")
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
    wanted = read_targets(targets if targets is not None else folder.resolve().parent / TARGETS_FILE, obj_id)
    scenes = sorted(p for p in folder.iterdir() if _is_scene(p)) if folder.is_dir() else []
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
                        f"{TARGETS_FILE})")
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
    gt = _read_json(scene / "scene_gt.json")
    cameras = _read_json(scene / "scene_camera.json")
    info_path = scene / "scene_gt_info.json"
    info = _read_json(info_path, "the ground-truth boxes (bbox_obj) and visible fractions come from it; "
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
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object keyed by object id")
    try:
        return {int(k): v for k, v in data.items()}
    except ValueError:
        raise DataError(f"{path}: keys must be object ids (numbers)") from None


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """BOP boxes ``[x, y, w, h]`` to ``[u_min, v_min, u_max, v_max]``: ``(*, 4) -> (*, 4)``."""
    return torch.cat([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], dim=-1)


def box_extent(boxes: torch.Tensor) -> torch.Tensor:
    """BOP ground-truth boxes ``[x, y, w, h]`` (``scene_gt_info.json``: ``x, y`` the first and ``x + w, y + h``
    the last pixel of the silhouette, as bop_toolkit's ``calc_2d_bbox`` computes them) to the silhouette's
    extent ``[u_min, v_min, u_max, v_max]`` with pixel centres at integer coordinates (the convention of our
    renders' tight boxes): half a pixel more on every side. ``(*, 4) -> (*, 4)``. On the test's tiny split
    this takes the AAE translation's depth error from +15 mm to +2..+4 mm."""
    return xywh_to_xyxy(boxes) + torch.tensor([-0.5, -0.5, 0.5, 0.5], dtype=boxes.dtype)


def crop_square(
    image: np.ndarray, window: Sequence[float], size: int, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """Resample the square ``window = [cx, cy, side]`` of ``image (H, W)`` or ``(H, W, C)`` to
    ``(size, size[, C])``; outside the image is 0.

    Output pixel ``j`` samples the image at ``u`` with ``j = s (u - u0) - 0.5``, ``s = size / side``,
    ``u0 = cx - side / 2`` (pixel centres at integer coordinates) -- the same ``A`` as
    :func:`multipose.data.views.crop_intrinsics`, so a point at pixel ``K_crop x`` of the crop is at
    ``K x`` in the image.
    """
    cx, cy, side = (float(v) for v in window)
    s = size / side
    u0, v0 = cx - side / 2.0, cy - side / 2.0
    M = np.array([[s, 0.0, -s * u0 - 0.5], [0.0, s, -s * v0 - 0.5]], dtype=np.float64)
    return cv2.warpAffine(image, M, (size, size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def estimate_translation(
    R: torch.Tensor,
    boxes: torch.Tensor,
    K: torch.Tensor,
    K_train: torch.Tensor,
    radius: float,
    vertices: torch.Tensor,
) -> torch.Tensor:
    """The AAE's translation from a 2D box: ``R (B, 3, 3), boxes (B, 4) [u_min, v_min, u_max, v_max],
    K (B, 3, 3), K_train (3, 3), vertices (V, 3) -> t (B, 3)`` (mm).

    The model is projected at rotation ``R`` and ``t = [0, 0, radius]`` with the training camera
    ``K_train`` (the synthetic render at a known distance; its tight box ``b_r``). Then, with ``b`` the
    test box, ``diag`` a box's diagonal and ``c`` its centre::

        z = radius * diag(b_r) / diag(b) * mean(fx / fx_train, fy / fy_train)
        x = (c_u(b) - cx) z / fx - (c_u(b_r) - cx_train) radius / fx_train      (y alike)

    the second term moving from the box centre to the projection of the model origin.
    """
    B = R.shape[0]
    K_train = K_train.to(R)
    t_train = torch.tensor([0.0, 0.0, float(radius)], dtype=R.dtype, device=R.device).expand(B, 3)
    rendered = tight_boxes(vertices.to(R), R, t_train, K_train)  # (B, 4)
    K = K.to(R)
    boxes = boxes.to(R)
    diag_r = (rendered[:, 2:] - rendered[:, :2]).norm(dim=-1)
    diag = (boxes[:, 2:] - boxes[:, :2]).norm(dim=-1).clamp_min(1e-6)
    ratio = 0.5 * (K[:, 0, 0] / K_train[0, 0] + K[:, 1, 1] / K_train[1, 1])
    z = radius * diag_r / diag * ratio
    centre_r = (rendered[:, :2] + rendered[:, 2:]) / 2 - K_train[:2, 2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 - K[:, :2, 2]
    f, f_train = torch.stack([K[:, 0, 0], K[:, 1, 1]], -1), torch.stack([K_train[0, 0], K_train[1, 1]])
    xy = centre * z[:, None] / f - centre_r * radius / f_train
    return torch.cat([xy, z[:, None]], dim=-1)


def poses_from_boxes(
    R_view: torch.Tensor, boxes: torch.Tensor, K: torch.Tensor, K_train: torch.Tensor, radius: float,
    vertices: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The AAE's poses of ``M`` rotations read from each of ``B`` crops: ``R_view (B, M, 3, 3)`` in the crop's
    view, ``boxes (B, 4)`` and cameras ``K (B, 3, 3)`` -> ``R (B, M, 3, 3), t (B, M, 3)``: the translation
    from the box (:func:`estimate_translation`) and the rotation corrected for it (:func:`correct_rotation`)."""
    B, M = R_view.shape[:2]
    t = estimate_translation(R_view.flatten(0, 1), boxes.repeat_interleave(M, 0), K.repeat_interleave(M, 0), K_train,
                             radius, vertices)
    R = correct_rotation(R_view.flatten(0, 1), t)
    return R.reshape(B, M, 3, 3), t.reshape(B, M, 3)


def correct_rotation(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The AAE's correction of a rotation read from a crop of an object off the optical axis:
    ``R (B, 3, 3), t (B, 3) -> (B, 3, 3)``.

    Training views show the object on the optical axis; an object at ``t`` is seen from a direction
    turned by about ``a_x = atan(t_x / t_z)`` and ``a_y = atan(t_y / t_z)``, so the camera-frame
    rotation is ``R_y(a_x) R_x(-a_y) R`` (``R_x(a)``, ``R_y(a)``: right-handed rotations about the
    camera's x and y axes), which maps the optical axis onto the direction of ``t`` to first order
    (exactly for ``t`` in the xz or yz plane). Identity for ``t = [0, 0, z]``.
    """
    ax = torch.atan2(t[:, 0], t[:, 2])
    ay = torch.atan2(t[:, 1], t[:, 2])
    one, zero = torch.ones_like(ax), torch.zeros_like(ax)
    # R_corr_y of the AAE with d_alpha_x = -ax: [[cos, 0, -sin], [0, 1, 0], [sin, 0, cos]](-ax)
    Ry = torch.stack([torch.cos(ax), zero, torch.sin(ax), zero, one, zero, -torch.sin(ax), zero, torch.cos(ax)],
                     -1).reshape(-1, 3, 3)
    # R_corr_x of the AAE with d_alpha_y = -ay: [[1, 0, 0], [0, cos, -sin], [0, sin, cos]](-ay)
    Rx = torch.stack([one, zero, zero, zero, torch.cos(ay), torch.sin(ay), zero, -torch.sin(ay), torch.cos(ay)],
                     -1).reshape(-1, 3, 3)
    return Ry.to(R) @ Rx.to(R) @ R


@dataclass(frozen=True)
class BopCrops:
    """Test instances cut out of their images (CPU tensors, ``N`` instances).

    Attributes:
        images: ``(N, 3, S, S)`` float32 RGB in [0, 1], the encoder's input crops.
        K_crop: ``(N, 3, 3)`` intrinsics of those crops.
        depth: ``(N, V, V)`` float32 test depth (mm) in the VSD window, 0 where unknown (all 0 for an
            instance whose image has no depth PNG); depth_known: ``(N,)`` bool, which instances have one.
        in_image: ``(N, V, V)`` bool, the pixels of the VSD window inside the camera image (BOP evaluates
            the full image: what lies outside it is not seen by either pose).
        K_vsd: ``(N, 3, 3)`` intrinsics of the VSD window (``V x V`` pixels).
        R: ``(N, 3, 3)``, t: ``(N, 3)``: ground-truth poses; K: ``(N, 3, 3)`` camera intrinsics.
        boxes: ``(N, 4)`` ground-truth boxes as silhouette extents ``[u_min, v_min, u_max, v_max]`` in the camera
            image (:func:`box_extent`).
        scene_id, im_id: ``(N,)`` int64; image_width: ``(N,)`` int64 pixels of the camera image.
    """

    images: torch.Tensor
    K_crop: torch.Tensor
    depth: torch.Tensor
    depth_known: torch.Tensor
    in_image: torch.Tensor
    K_vsd: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    K: torch.Tensor
    boxes: torch.Tensor
    scene_id: torch.Tensor
    im_id: torch.Tensor
    image_width: torch.Tensor


def read_rgb(path: Path) -> np.ndarray:
    """A colour (or grey, 8/16-bit) test image as ``(H, W, 3)`` uint8 RGB; :class:`DataError` if unreadable."""
    image = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: cannot read this image")
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_depth(path: Path, scale: float) -> np.ndarray:
    """A BOP depth PNG in millimetres (``value * scale``): ``(H, W)`` float32; :class:`DataError` if unreadable."""
    depth = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if depth is None or depth.ndim != 2:
        raise DataError(f"{path}: cannot read this depth image (expected a one-channel 16-bit PNG)")
    return depth.astype(np.float32) * np.float32(scale)


def load_bop_crops(
    instances: Sequence[BopInstance],
    crop_size: int,
    pad_factor: float,
    vsd_size: int,
    vsd_pad: float = 2.0,
    progress: bool = True,
) -> BopCrops:
    """Cut every instance out of its image: the encoder's crop (window side ``pad_factor * max(w, h)``
    of ``bbox_obj``, ``crop_size`` pixels, bilinear) and the test depth in the VSD window (side
    ``vsd_pad * max(w, h)``, ``vsd_size`` pixels, nearest neighbour so no depths are mixed). Each image
    is read once. An image without a depth PNG leaves its instances' test depth unknown (counted, with a
    warning: VSD then uses their rendered ground truth)."""
    if not instances:
        raise ValueError("no instances to load")
    boxes = box_extent(torch.from_numpy(np.stack([i.bbox_obj for i in instances])))
    zeros = torch.zeros(len(instances), 2, dtype=boxes.dtype)
    windows = crop_windows(boxes, zeros, pad_factor)
    vsd_windows = crop_windows(boxes, zeros, vsd_pad)
    K = torch.from_numpy(np.stack([i.K for i in instances]))
    images, depths, inside, widths = [], [], [], []
    known = torch.tensor([i.depth_path is not None for i in instances])
    if not known.all():
        logger.warning("%d of %d BOP test instances are in images without a depth/ PNG: VSD uses their rendered "
                       "ground truth as the test depth", int((~known).sum()), len(instances))
    cache: dict[Path, np.ndarray] = {}
    for n, inst in enumerate(progress_bar(instances, desc="cropping test images", unit="instance", disable=not progress,
                                  leave=False)):
        assert inst.image_path is not None  # read_bop_split keeps only instances whose image exists
        if inst.image_path not in cache:
            cache.clear()  # instances are ordered by image: keep one image (and its depth) in memory
            cache[inst.image_path] = read_rgb(inst.image_path)
            if inst.depth_path is not None:
                cache[inst.depth_path] = read_depth(inst.depth_path, inst.depth_scale)
        crop = crop_square(cache[inst.image_path], windows[n].tolist(), crop_size, cv2.INTER_LINEAR)
        images.append(torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0)
        depth = np.zeros((vsd_size, vsd_size), np.float32)
        if inst.depth_path is not None:
            depth = crop_square(cache[inst.depth_path], vsd_windows[n].tolist(), vsd_size, cv2.INTER_NEAREST)
        depths.append(torch.from_numpy(depth))
        height, width = cache[inst.image_path].shape[:2]
        frame = np.ones((height, width), np.uint8)
        widths.append(width)
        inside.append(torch.from_numpy(crop_square(frame, vsd_windows[n].tolist(), vsd_size, cv2.INTER_NEAREST) > 0))
    return BopCrops(
        images=torch.stack(images),
        K_crop=crop_intrinsics_batch(K, windows, crop_size),
        depth=torch.stack(depths),
        depth_known=known,
        in_image=torch.stack(inside),
        K_vsd=crop_intrinsics_batch(K, vsd_windows, vsd_size),
        R=torch.from_numpy(np.stack([i.R for i in instances])).float(),
        t=torch.from_numpy(np.stack([i.t for i in instances])).float(),
        K=K.float(),
        boxes=boxes.float(),
        scene_id=torch.tensor([i.scene_id for i in instances], dtype=torch.int64),
        im_id=torch.tensor([i.im_id for i in instances], dtype=torch.int64),
        image_width=torch.tensor(widths, dtype=torch.int64),
    )


def crop_intrinsics_batch(K: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`multipose.data.views.crop_intrinsics` with one camera per window: ``(N, 3, 3), (N, 3)
    -> (N, 3, 3)`` float32 (``A_n K_n``)."""
    A = crop_intrinsics(torch.eye(3, dtype=torch.float64), windows.double(), size)
    return (A @ K.double()).float()


def subsample(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` indices of ``range(n)``, evenly spaced (all when ``n <= limit``)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))



def crop_like_bop2pickle(
    image: np.ndarray, box_xywh: np.ndarray, pad_factor: float = 1.2, size: int = 128
) -> np.ndarray:
    """The original's ``bop2pickle.py`` crop: a square of side ``int(max(w, h) * pad_factor)`` about the
    box centre, clipped at the image border (so a crop at the border is not square and gets
    stretched), resized to ``size`` x ``size`` with bilinear interpolation: ``(H, W, 3) -> (size, size, 3)``."""
    x, y, w, h = np.asarray(box_xywh).astype(np.int32)
    side = int(max(h, w) * pad_factor)
    left, right = int(max(x + w / 2 - side / 2, 0)), int(min(x + w / 2 + side / 2, image.shape[1]))
    top, bottom = int(max(y + h / 2 - side / 2, 0)), int(min(y + h / 2 + side / 2, image.shape[0]))
    return cv2.resize(image[top:bottom, left:right], (size, size), interpolation=cv2.INTER_LINEAR)


def bop_split_pickle(
    folder: str | os.PathLike[str], obj_id: int, size: int = 128, pad_factor: float = 1.2, limit: int | None = None
) -> dict[str, list]:
    """The original's ``bop2pickle.py``: every instance of ``obj_id`` in a BOP split folder with a
    non-empty visible box (no visibility threshold), cropped by :func:`crop_like_bop2pickle` around
    its visible box, in the original's pickle format ``{"images", "Rs", "ts", "visib_fract",
    "scene_ids", "img_ids", "obj_ids"}`` (uint8 RGB crops, OpenCV ``cam_R_m2c``, ``cam_t_m2c`` in mm).
    ``limit``: at most that many instances, evenly spaced (:func:`subsample`)."""
    instances = [
        i for i in read_bop_split(folder, obj_id, min_visib_fract=0.0).instances
        if i.bbox_visib[2] > 0 and i.bbox_visib[3] > 0
    ]
    if not instances:
        raise DataError(f"{folder}: no instance of object {obj_id} with a visible box")
    if limit is not None:
        instances = [instances[i] for i in subsample(len(instances), limit)]
    data: dict[str, list] = {k: [] for k in ("images", "Rs", "ts", "visib_fract", "scene_ids", "img_ids", "obj_ids")}
    images: dict[Path, np.ndarray] = {}
    for inst in instances:
        assert inst.image_path is not None  # read_bop_split keeps only instances whose image exists
        if inst.image_path not in images:
            images = {inst.image_path: read_rgb(inst.image_path)}  # instances come ordered by image
        data["images"].append(crop_like_bop2pickle(images[inst.image_path], inst.bbox_visib, pad_factor, size))
        data["Rs"].append(np.asarray(inst.R, dtype=np.float64))
        data["ts"].append(np.asarray(inst.t, dtype=np.float64))
        data["visib_fract"].append(float(inst.visib_fract))
        data["scene_ids"].append(int(inst.scene_id))
        data["img_ids"].append(int(inst.im_id))
        data["obj_ids"].append(int(inst.obj_id))
    return data
