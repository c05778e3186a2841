"""The test set of an experiment config (``[Evaluation]``): synthetic samples generated with a fixed seed, a
dataset file, or a BOP split folder (T-LESS ``test_primesense``) with its object's ``models_info.json``
(diameter, symmetries) and detections; and the object model the BOP19 errors are computed on."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from multipose.config import Config, crop_size, render_distance
from multipose.config.derived import num_objects
from multipose.core.mesh import load_mesh
from multipose.data import bop_files
from multipose.data.io import load_samples
from multipose.data.views import ViewRenderer
from multipose.evaluation import bop_folders, bop_images
from multipose.evaluation.bop19 import ObjectModel
from multipose.evaluation.detections import Detections, read_detections
from multipose.evaluation.metrics import symmetry_transformations
from multipose.evaluation.testsets import BOP_VSD_PAD, BOP_VSD_SCALE, TEST_SEED, TestSet
from multipose.experiment.datasets import generate_samples
from multipose.experiment.factories import load_data_mesh, view_settings
from multipose.experiment.objects import object_configs
from multipose.inference import box_pose
from multipose.inference.images import crop_boxes, read_rgb
from multipose.infra.distributed import Dist
from multipose.infra.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


def object_info(cfg: Config, bop_folder: Path | None) -> tuple[Path, dict] | None:
    """The ``models_info.json`` entry of ``[Evaluation] OBJ_ID`` (``MODELS_INFO``, else found beside a BOP
    folder) and its file, or None (with a warning) when there is none or it describes another object than
    the data model."""
    ev = cfg.Evaluation
    path = Path(ev.MODELS_INFO) if ev.MODELS_INFO else None
    if path is None and bop_folder:
        path = bop_folders.find_models_info(bop_folder)
    if path is None:
        return None
    if ev.OBJ_ID is None:
        logger.warning("%s: [Evaluation] OBJ_ID is not set, so the object's symmetries are unknown", path)
        return None
    info = bop_folders.read_models_info(path)
    if ev.OBJ_ID not in info:
        logger.warning("%s has no object %d: no symmetries", path, ev.OBJ_ID)
        return None
    mismatch = _size_mismatch(info[ev.OBJ_ID], cfg)
    if mismatch:
        logger.warning("%s: object %d is not the data model (%s): its symmetries are not used; set [Evaluation] "
                       "MODELS_INFO and OBJ_ID for %s", path, ev.OBJ_ID, mismatch, cfg.Dataset.MODEL_PATH_DATA)
        return None
    return path, info[ev.OBJ_ID]


def object_symmetries(cfg: Config, bop_folder: Path | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The object's symmetries ``R (S, 3, 3), t (S, 3)`` (float64, identity included) from its
    :func:`object_info`, or None."""
    found = object_info(cfg, bop_folder)
    if found is None:
        return None
    path, entry = found
    try:
        R, t = symmetry_transformations(entry)
    except ValueError as exc:
        raise DataError(f"{path}: object {cfg.Evaluation.OBJ_ID}: {exc}") from None
    logger.info("symmetries of object %d from %s: %d rotations", cfg.Evaluation.OBJ_ID, path, R.shape[0])
    return R, t


def _symmetries(cfg: Config, bop_folder: Path | None) -> torch.Tensor | None:
    found = object_symmetries(cfg, bop_folder)
    return found[0].float() if found is not None else None


def _size_mismatch(entry: dict, cfg: Config) -> str | None:
    """How a models_info entry's box ``size_x/y/z`` differs from the data mesh's (as loaded, up to one
    scale factor, for NORMALIZE_VERTICES), or None when they agree within 2 % (or the entry has no box)."""
    if not all(f"size_{axis}" in entry for axis in "xyz"):
        return None
    sizes = np.array([entry[f"size_{axis}"] for axis in "xyz"], dtype=float)
    vertices = load_data_mesh(cfg).vertices
    mesh_sizes = (vertices.amax(dim=0) - vertices.amin(dim=0)).double().numpy()
    ratio = mesh_sizes / np.maximum(sizes, 1e-9)
    if np.all(np.abs(ratio / ratio.mean() - 1.0) < 0.02):
        return None
    return (f"box {' x '.join(f'{v:.1f}' for v in sizes)} mm, the data model's "
            f"{' x '.join(f'{v:.1f}' for v in mesh_sizes)}")


def _centred_crop_intrinsics(cfg: Config, R: torch.Tensor) -> torch.Tensor:
    """Crop intrinsics of the centred training window for rotations ``R (N, 3, 3)`` (no rendering)."""
    settings = view_settings(cfg)
    mesh = load_data_mesh(cfg)
    renderer = ViewRenderer(mesh, settings, "cpu")
    _, _, K = renderer.windows(R.float(), torch.zeros(R.shape[0], 2))
    return K


def load_test_set(
    cfg: Config, device: torch.device | str = "cpu", num: int | None = None, progress: bool = True,
    dist: Dist | None = None,
) -> TestSet:
    """The test set of ``[Evaluation] TEST_DATA_PATH`` (see the module docstring); at most ``num``
    (default ``[Evaluation] NUM_SAMPLES``) instances, evenly spaced. ``dist``: the ranks render a
    synthetic test set together (every rank gets all of it)."""
    check_evaluation_inputs(cfg)
    ev = cfg.Evaluation
    num = int(num if num is not None else ev.NUM_SAMPLES)
    size = crop_size(cfg)
    obj_id = ev.OBJ_ID or 1
    path = ev.TEST_DATA_PATH
    if not path:
        samples = generate_samples(cfg, num, TEST_SEED, device, progress=progress, dist=dist)
        assert samples.t is not None and samples.K is not None  # rendered samples have their poses and intrinsics
        return TestSet(
            images=samples.images, R=samples.R, t=samples.t, K_vsd=samples.K, vsd_size=samples.image_size,
            obj_id=obj_id, symmetries=_symmetries(cfg, None), name="synthetic-test",
            description=f"{len(samples)} synthetic samples (seed {TEST_SEED}, {samples.image_size} px)",
        )
    path = Path(path)
    if path.is_dir():
        return _bop_test_set(cfg, path, num, progress)
    samples = load_samples(path)
    rows = torch.arange(len(samples))
    if samples.ids is not None:  # crops of a BOP split: one object per evaluation
        objects = sorted(set(samples.ids[:, 2].tolist()))
        if ev.OBJ_ID is None and len(objects) > 1:
            raise ConfigError(f"{path} holds objects {objects}; set [Evaluation] OBJ_ID to the one to evaluate")
        obj_id = ev.OBJ_ID if ev.OBJ_ID is not None else objects[0]
        rows = torch.nonzero(samples.ids[:, 2] == obj_id).flatten()
        if len(rows) == 0:
            raise ConfigError(f"{path} holds no crop of object {obj_id} ([Evaluation] OBJ_ID); it has {objects}")
    chosen = rows[torch.from_numpy(bop_folders.subsample(len(rows), num))]
    images = samples.images[chosen]
    R = samples.R[chosen]
    t, K = samples.t, samples.K
    if images.shape[-1] != size:
        logger.info("resizing %d test images from %d to %d px", len(chosen), images.shape[-1], size)
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="area")
        t = K = None  # the stored crop intrinsics belong to the old size
    t = t[chosen] if t is not None else torch.tensor([0.0, 0.0, render_distance(cfg)]).expand(len(chosen), 3).clone()
    K = K[chosen] if K is not None else _centred_crop_intrinsics(cfg, R)
    ids = samples.ids[chosen] if samples.ids is not None else None
    return TestSet(
        images=images, R=R, t=t, K_vsd=K, vsd_size=size, obj_id=obj_id, symmetries=_symmetries(cfg, None),
        name=f"{path.stem.replace('_', '-')}-test", description=f"{len(chosen)} samples from {path}",
        scene_id=ids[:, 0] if ids is not None else None, im_id=ids[:, 1] if ids is not None else None,
        t_scene=samples.t_scene[chosen] if samples.t_scene is not None else None,
        R_stored=samples.R_predicted[chosen] if samples.R_predicted is not None else None,
    )


def _bop_test_set(cfg: Config, path: Path, num: int, progress: bool) -> TestSet:
    """A BOP split folder's instances of ``OBJ_ID``: ``PROTOCOL: sixd17`` those visible enough, at most
    ``num`` evenly spaced; ``bop19`` the targets of the images of at most ``num`` instances (whole images,
    evenly spaced, so that every image keeps all its targets)."""
    ev = cfg.Evaluation
    size = crop_size(cfg)
    if ev.PROTOCOL == "bop19":
        instances, num_targets = bop_folders.read_bop19_targets(path, ev.OBJ_ID, targets_path(cfg)).bop19_images(num)
    else:
        instances = bop_folders.read_bop_split(path, ev.OBJ_ID, ev.MIN_VISIB_FRACT).instances
        instances = [instances[i] for i in bop_folders.subsample(len(instances), num)]
        num_targets = None
    vsd_size = BOP_VSD_SCALE * size
    crops = bop_images.load_bop_crops(instances, size, cfg.Dataset.PAD_FACTOR, vsd_size, BOP_VSD_PAD, progress=progress)
    return TestSet(
        images=crops.images, R=crops.R, t=crops.t, K_vsd=crops.K_vsd, vsd_size=vsd_size, depth_test=crops.depth,
        depth_known=crops.depth_known, in_image=crops.in_image, boxes=crops.boxes, K=crops.K,
        scene_id=crops.scene_id, im_id=crops.im_id, obj_id=ev.OBJ_ID, symmetries=_symmetries(cfg, path),
        name=bop_folders.result_name(path), image_width=crops.image_width, num_targets=num_targets,
        inst_count=torch.tensor([i.inst_count for i in instances]) if ev.PROTOCOL == "bop19" else None,
        description=f"{len(instances)} instances of object {ev.OBJ_ID} in BOP folder {path}"
                    + (f" (BOP19 targets: {num_targets})" if num_targets is not None else ""),
    )


def check_evaluation_inputs(cfg: Config) -> None:
    """Cheap checks of the ``[Evaluation]`` inputs (paths exist, ``OBJ_ID`` for a BOP folder), so that a
    bad setting stops ``train.py`` before it trains. Raises :class:`~multipose.infra.errors.ConfigError`. A head
    of several objects is evaluated on a generated test set per object, or on a BOP split with ``OBJ_ID`` a list
    of its objects' ids (every one in the split's ``models_info.json``); each object's view is then checked."""
    if cfg.Evaluation.CHECKPOINTS:
        raise ConfigError(f"{cfg.origin('Evaluation', 'CHECKPOINTS')}: [Evaluation] CHECKPOINTS (one run per object) "
                          "is read by evaluate.py alone; remove it from the config of a run")
    if num_objects(cfg) > 1:
        _check_objects_test_data(cfg)
        for one in object_configs(cfg):
            check_evaluation_inputs(one)
        return
    ev = cfg.Evaluation
    def bad(key: str, what: str) -> ConfigError:
        return ConfigError(f"{cfg.origin('Evaluation', key)}: [Evaluation] {key} = '{ev[key]}': {what}")

    if ev.TEST_DATA_PATH:
        path = Path(ev.TEST_DATA_PATH)
        if path.is_dir():
            if not bop_files.is_bop_split(path):
                raise bad("TEST_DATA_PATH", "expected a BOP split folder (scene folders with scene_gt.json), "
                                            "a dataset file (.npz, .p) or empty")
            if ev.OBJ_ID is None:
                raise ConfigError(
                    f"{cfg.origin('Evaluation', 'TEST_DATA_PATH')}: [Evaluation] OBJ_ID: expected the id of the "
                    f"object to evaluate in the BOP folder {path} (e.g. OBJ_ID: 10)"
                )
        elif not path.is_file():
            raise bad("TEST_DATA_PATH", "no such file or folder")
    if ev.MODELS_INFO and not Path(ev.MODELS_INFO).is_file():
        raise bad("MODELS_INFO", "no such file (a BOP models_info.json)")
    if ev.MODEL_PATH_EVAL and not Path(ev.MODEL_PATH_EVAL).is_file():
        raise bad("MODEL_PATH_EVAL", "no such file (a PLY/OBJ model in mm, e.g. BOP's models_eval/obj_000010.ply)")
    if ev.DETECTIONS and not Path(ev.DETECTIONS).is_file():
        raise bad("DETECTIONS", "no such file (a BOP detections JSON)")
    if ev.DETECTIONS and ev.PROTOCOL != "bop19":
        raise bad("DETECTIONS", "detections are evaluated with PROTOCOL: bop19 (matching estimates to targets); "
                                "set it, or leave DETECTIONS empty")
    if ev.PROTOCOL == "bop19":
        if not ev.TEST_DATA_PATH or not Path(ev.TEST_DATA_PATH).is_dir():
            raise bad("PROTOCOL", "bop19 evaluates a BOP split folder: set [Evaluation] TEST_DATA_PATH to one "
                                  "(e.g. tless/test_primesense), or use PROTOCOL: sixd17")
        targets = targets_path(cfg)
        if cfg.Rendering.NORMALIZE_VERTICES:
            raise bad("PROTOCOL", "bop19 measures the BOP poses of the models as given (mm), which "
                                  "[Rendering] NORMALIZE_VERTICES would move and rescale: set it to false")
        if not targets.is_file() and not targets.with_name(targets.name + ".gz").is_file():
            key = "TARGETS_FILE" if ev.TARGETS_FILE else "PROTOCOL"
            raise bad(key, f"bop19 evaluates the targets of {targets}, which does not exist (it comes with "
                           "the BOP dataset; [Evaluation] TARGETS_FILE names another)")
    elif ev.TARGETS_FILE:
        raise bad("TARGETS_FILE", "a targets file is read by PROTOCOL: bop19; set it, or leave TARGETS_FILE empty")


def targets_path(cfg: Config) -> Path:
    """The BOP targets file of ``PROTOCOL: bop19``: ``[Evaluation] TARGETS_FILE``, else ``test_targets_bop19.json``
    in the dataset folder (the BOP split's parent)."""
    ev = cfg.Evaluation
    if ev.TARGETS_FILE:
        return Path(ev.TARGETS_FILE)
    return Path(ev.TEST_DATA_PATH).resolve().parent / bop_folders.TARGETS_FILE


def _check_objects_test_data(cfg: Config) -> None:
    """A head of several objects: a test set other than the generated ones must be a BOP split with ``OBJ_ID``
    listing the objects' ids (the count is :func:`~multipose.config.derived.check_objects`'), each of them in the
    ``models_info.json`` found for it, and no single ``MODEL_PATH_EVAL``."""
    ev, n = cfg.Evaluation, num_objects(cfg)
    if not ev.TEST_DATA_PATH:
        return
    where = f"{cfg.origin('Evaluation', 'TEST_DATA_PATH')}: [Evaluation] TEST_DATA_PATH = '{ev.TEST_DATA_PATH}'"
    if not Path(ev.TEST_DATA_PATH).is_dir():
        raise ConfigError(f"{where}: a head of {n} objects is evaluated on a BOP split folder (with OBJ_ID the "
                          "list of their ids) or on generated test sets (TEST_DATA_PATH empty); a dataset file holds "
                          "one object's crops")
    if not isinstance(ev.OBJ_ID, tuple):
        raise ConfigError(f"{where}: a head of {n} objects needs [Evaluation] OBJ_ID, the BOP ids of its objects in "
                          f"the order of MODEL_PATH_DATA (e.g. OBJ_ID: {list(range(1, n + 1))})")
    if ev.MODEL_PATH_EVAL:
        raise ConfigError(f"{cfg.origin('Evaluation', 'MODEL_PATH_EVAL')}: [Evaluation] MODEL_PATH_EVAL names one "
                          f"model, but the head has {n} objects: leave it empty (each object's models_eval/"
                          "obj_<id>.ply beside the BOP folder, else its MODEL_PATH_DATA)")
    info_path = Path(ev.MODELS_INFO) if ev.MODELS_INFO else bop_folders.find_models_info(Path(ev.TEST_DATA_PATH))
    if info_path is not None and info_path.is_file():
        known = bop_folders.read_models_info(info_path)
        missing = [i for i in ev.OBJ_ID if i not in known]
        if missing:
            raise ConfigError(f"{cfg.origin('Evaluation', 'OBJ_ID')}: [Evaluation] OBJ_ID = {list(ev.OBJ_ID)}: "
                              f"{info_path} has no object {missing[0]} (it has {sorted(known)[:20]}); give the ids of "
                              "the head's objects in this dataset")


def eval_model_path(cfg: Config) -> Path:
    """The model MSSD and MSPD measure: ``[Evaluation] MODEL_PATH_EVAL``, else BOP's
    ``models_eval/obj_<OBJ_ID>.ply`` beside the BOP folder if present, else ``MODEL_PATH_DATA``."""
    ev = cfg.Evaluation
    if ev.MODEL_PATH_EVAL:
        return Path(ev.MODEL_PATH_EVAL)
    if ev.TEST_DATA_PATH and ev.OBJ_ID is not None:
        beside = Path(ev.TEST_DATA_PATH).resolve().parent / "models_eval" / f"obj_{ev.OBJ_ID:06d}.ply"
        if beside.is_file():
            return beside
    return Path(cfg.Dataset.MODEL_PATH_DATA)


def object_model(cfg: Config) -> ObjectModel:
    """The :class:`ObjectModel` of ``[Evaluation] OBJ_ID``: points of :func:`eval_model_path`, the diameter
    and symmetries of its ``models_info.json`` entry (required: MSSD's thresholds are fractions of the
    diameter)."""
    folder = Path(cfg.Evaluation.TEST_DATA_PATH) if cfg.Evaluation.TEST_DATA_PATH else None
    found = object_info(cfg, folder)
    if found is None or "diameter" not in found[1]:
        raise ConfigError(f"[Evaluation] PROTOCOL = bop19 needs the diameter of object {cfg.Evaluation.OBJ_ID} from "
                          "a BOP models_info.json: set [Evaluation] MODELS_INFO (or put models*/models_info.json "
                          "beside the BOP folder)")
    sym_R, sym_t = object_symmetries(cfg, folder) or (torch.eye(3, dtype=torch.float64)[None],
                                                       torch.zeros(1, 3, dtype=torch.float64))
    path = eval_model_path(cfg)
    points = load_mesh(path, normalize=cfg.Rendering.NORMALIZE_VERTICES).vertices.double()
    logger.info("BOP19: MSSD and MSPD on the %d points of %s, diameter %.2f mm, %d symmetries", points.shape[0],
                path, float(found[1]["diameter"]), sym_R.shape[0])
    return ObjectModel(points=points, sym_R=sym_R, sym_t=sym_t, diameter=float(found[1]["diameter"]))


def load_detections(cfg: Config, targets: TestSet, progress: bool = False) -> Detections:
    """The detections of ``OBJ_ID`` in ``[Evaluation] DETECTIONS`` that lie in the images of ``targets`` (the
    BOP19 test set: other images are not evaluated), cropped. Raises :class:`DataError` for a bad file."""
    ev = cfg.Evaluation
    path = Path(ev.DETECTIONS)
    assert targets.scene_id is not None and targets.im_id is not None and targets.K is not None
    keys = list(zip(targets.scene_id.tolist(), targets.im_id.tolist(), strict=True))
    first = {key: i for i, key in reversed(list(enumerate(keys)))}
    found = sorted((d for d in read_detections(path, ev.OBJ_ID)
                    if d["key"] in first and d["bbox"][2] > 0 and d["bbox"][3] > 0),
                   key=lambda d: d["key"])  # by image: each image is read once
    if not found:
        raise DataError(f"{path}: no detection of object {ev.OBJ_ID} in the {len(first)} target images")
    logger.info("detections: %d of object %d in %d target images from %s", len(found), ev.OBJ_ID,
                len({d["key"] for d in found}), path)
    xywh = torch.tensor([d["bbox"] for d in found], dtype=torch.float64)
    boxes = box_pose.coco_extent(xywh)
    size = crop_size(cfg)
    split = Path(ev.TEST_DATA_PATH)
    crops: list[torch.Tensor] = []
    image, loaded = np.zeros((1, 1, 3), np.uint8), None
    for n, d in enumerate(found):
        if d["key"] != loaded:
            scene, im = d["key"]
            path_rgb = bop_files.find_image(split / f"{scene:06d}", im, ("rgb", "gray"))
            if path_rgb is None:
                raise DataError(f"{split / f'{scene:06d}'}: no image {im:06d} for a detection")
            image, loaded = read_rgb(path_rgb), d["key"]
        crops.append(crop_boxes(image, boxes[n:n + 1], size, cfg.Dataset.PAD_FACTOR)[0])
    index = torch.tensor([first[d["key"]] for d in found])
    inst_count = torch.ones(len(found), dtype=torch.int64)
    if targets.inst_count is not None:
        inst_count = targets.inst_count[index]
    seconds: dict[tuple[int, int], float] = {}
    for d in found:
        seconds[d["key"]] = max(seconds.get(d["key"], 0.0), d["time"])  # BOP files repeat the image's time
    return Detections(images=torch.stack(crops), boxes=boxes.float(), K=targets.K[index],
                      scene_id=targets.scene_id[index], im_id=targets.im_id[index],
                      score=torch.tensor([d["score"] for d in found]), inst_count=inst_count, image_seconds=seconds)
