"""Test sets of an evaluation (``[Evaluation] TEST_DATA_PATH``), loaded and checked.

- empty: ``NUM_SAMPLES`` synthetic samples made like the validation set (training renderer, held-out
  backgrounds, augmentation), seed :data:`TEST_SEED`. The translation is known there (``[0, 0, RADIUS]``)
  and only the rotation is estimated. VSD needs a test (scene) depth; a synthetic sample has no occluder,
  so the **rendered ground-truth depth is the test depth**, and the estimated and ground-truth depths are
  rendered with the sample's crop intrinsics and ``t``;
- a dataset file (our ``.npz`` or the original's pickle): the same; a pickle stores no ``t`` or ``K``, so
  ``t = [0, 0, RADIUS]`` and ``K`` is the crop of the centred training window for the ground-truth rotation
  (any fixed camera serves, since VSD compares two renders with the same one). A pickle of a BOP split's
  crops (``scene_ids``, ``img_ids``, ``obj_ids``, ``ts``: the original's ``bop2pickle.py`` or
  ``generate_dataset.py --from-bop``) brings those ids and the scene translations (:attr:`TestSet.t_scene`),
  and its ``Rs_predicted`` (:attr:`TestSet.R_stored`);
- a BOP split folder (T-LESS ``test_primesense``, :mod:`multipose.evaluation.bop`): every instance of
  ``OBJ_ID`` cropped with its ground-truth box; the translation is estimated from the box the AAE way and
  the rotation corrected for the object's offset from the optical axis; VSD uses the scene's depth image in
  a window of :data:`BOP_VSD_PAD` times the box around the object, rendered at twice the crop size
  (:data:`BOP_VSD_SCALE`).

The object's symmetries come from a BOP ``models_info.json`` (``MODELS_INFO`` or found beside the BOP
folder) when its entry matches the data mesh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from multipose.config import Config, crop_size, render_distance
from multipose.data.datasets import generate_samples
from multipose.data.io import load_samples
from multipose.data.views import ViewRenderer, view_settings
from multipose.distributed import Dist
from multipose.errors import ConfigError, DataError
from multipose.evaluation import bop
from multipose.evaluation.metrics import symmetry_transformations
from multipose.mesh import load_data_mesh

logger = logging.getLogger(__name__)

__all__ = ["BOP_VSD_PAD", "BOP_VSD_SCALE", "TEST_SEED", "TestSet", "check_evaluation_inputs", "load_test_set"]

#: Seed of generated synthetic test sets (validation sets use 0: the two never share samples).
TEST_SEED = 1
#: BOP: side of the VSD window relative to the larger side of the ground-truth box.
BOP_VSD_PAD = 2.0
#: BOP: pixels of the VSD window relative to the encoder's crop size.
BOP_VSD_SCALE = 2


@dataclass(frozen=True, eq=False)
class TestSet:
    """What an evaluation runs on (CPU tensors, ``N`` instances).

    Attributes:
        images: ``(N, 3, S, S)`` float32 RGB in [0, 1], the encoder's input.
        R: ``(N, 3, 3)`` ground-truth rotations; t: ``(N, 3)`` ground-truth translations (mm).
        K_vsd: ``(N, 3, 3)`` intrinsics of the VSD renders (``vsd_size`` pixels square).
        vsd_size: side of the VSD depth maps.
        depth_test: ``(N, V, V)`` test depth (mm, 0 unknown) in the VSD window, or None: the rendered
            ground-truth depth is the test depth (synthetic data, no occlusion).
        depth_known: ``(N,)`` bool, the instances whose ``depth_test`` was measured (the others use their
            rendered ground truth), or None: all of them.
        in_image: ``(N, V, V)`` bool, the pixels of the VSD window inside the camera image (renders are
            cut there, as BOP's full-image VSD sees them), or None: the whole window.
        boxes: ``(N, 4)`` ground-truth boxes ``[u_min, v_min, u_max, v_max]`` in the camera image and
            K: ``(N, 3, 3)`` its intrinsics, to estimate the translation from (BOP); None: ``t`` is known.
        scene_id, im_id: ``(N,)`` int64 (BOP ids; 0 and the sample index otherwise).
        obj_id: the object's id in result files (``OBJ_ID``, else 1).
        symmetries: ``(S, 3, 3)`` the object's symmetry rotations (identity included), or None.
        name: ``<dataset>-<split>`` for BOP result file names; description: one line for reports.
        t_scene: ``(N, 3)`` the instances' translations in their scenes, or None: the results files then
            hold these and the rotations corrected for them (crops from a pickle of a BOP split).
        R_stored: ``(N, 3, 3)`` rotations stored with the test set (a pickle's ``Rs_predicted``),
            evaluated as the method ``stored``, or None.
        image_width: ``(N,)`` pixels of the camera image (BOP; MSPD's thresholds scale with it), or None.
        inst_count: ``(N,)`` BOP19: instances of the object to find in the instance's image, or None.
        num_targets: BOP19: all the target instances (those the test set could not crop count as not found).
    """

    __test__ = False  # not a pytest test class despite its name

    images: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    K_vsd: torch.Tensor
    vsd_size: int
    depth_test: torch.Tensor | None = None
    depth_known: torch.Tensor | None = None
    in_image: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    K: torch.Tensor | None = None
    scene_id: torch.Tensor | None = None
    im_id: torch.Tensor | None = None
    obj_id: int = 1
    symmetries: torch.Tensor | None = None
    name: str = "synthetic-test"
    description: str = ""
    t_scene: torch.Tensor | None = None
    R_stored: torch.Tensor | None = None
    image_width: torch.Tensor | None = None
    inst_count: torch.Tensor | None = None
    num_targets: int | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, S, S), got {tuple(self.images.shape)}")
        window = (n, self.vsd_size, self.vsd_size)
        shapes = {"R": (n, 3, 3), "t": (n, 3), "K_vsd": (n, 3, 3), "depth_test": window, "depth_known": (n,),
                  "in_image": window, "image_width": (n,), "inst_count": (n,),
                  "boxes": (n, 4), "K": (n, 3, 3), "scene_id": (n,), "im_id": (n,), "t_scene": (n, 3),
                  "R_stored": (n, 3, 3)}
        for name, shape in shapes.items():
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"{name} must be {shape}, got {tuple(value.shape)}")
        if (self.boxes is None) != (self.K is None):
            raise ValueError("boxes and K go together (translation from boxes needs the camera)")
        if self.scene_id is None:
            object.__setattr__(self, "scene_id", torch.zeros(n, dtype=torch.int64))
        if self.im_id is None:
            object.__setattr__(self, "im_id", torch.arange(n, dtype=torch.int64))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def vsd_depths(
        self, rows: torch.Tensor, depth_est: torch.Tensor, depth_gt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The depths VSD compares in the windows of the instances ``rows (n,)``: renders ``depth_est (n, ...,
        V, V)`` and ``depth_gt (n, V, V)`` cut at the image border (BOP sees the image only), and the test depth
        ``(n, V, V)``: the measured one where known, else the ground-truth render (on ``depth_gt``'s device)."""
        device = depth_gt.device
        if self.in_image is not None:
            inside = self.in_image[rows].to(device)
            depth_gt = depth_gt * inside
            depth_est = depth_est * inside.reshape(len(rows), *[1] * (depth_est.dim() - 3), *inside.shape[1:])
        depth_test = depth_gt
        if self.depth_test is not None:
            depth_test = self.depth_test[rows].to(device)
            if self.depth_known is not None:
                depth_test = torch.where(self.depth_known[rows].to(device)[:, None, None], depth_test, depth_gt)
        return depth_est, depth_gt, depth_test

    def take(self, index: torch.Tensor) -> TestSet:
        """The instances at ``index (n,)``."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            is_per_sample = isinstance(value, torch.Tensor) and f.name != "symmetries"
            values[f.name] = value[index] if is_per_sample else value
        return TestSet(**values)


def object_info(cfg: Config, bop_folder: Path | None) -> tuple[Path, dict] | None:
    """The ``models_info.json`` entry of ``[Evaluation] OBJ_ID`` (``MODELS_INFO``, else found beside a BOP
    folder) and its file, or None (with a warning) when there is none or it describes another object than
    the data model."""
    ev = cfg.Evaluation
    path = Path(ev.MODELS_INFO) if ev.MODELS_INFO else (bop.find_models_info(bop_folder) if bop_folder else None)
    if path is None:
        return None
    if ev.OBJ_ID is None:
        logger.warning("%s: [Evaluation] OBJ_ID is not set, so the object's symmetries are unknown", path)
        return None
    info = bop.read_models_info(path)
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
    chosen = rows[torch.from_numpy(bop.subsample(len(rows), num))]
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
        instances, num_targets = bop.read_bop19_targets(path, ev.OBJ_ID).bop19_images(num)
    else:
        instances = bop.read_bop_split(path, ev.OBJ_ID, ev.MIN_VISIB_FRACT).instances
        instances = [instances[i] for i in bop.subsample(len(instances), num)]
        num_targets = None
    vsd_size = BOP_VSD_SCALE * size
    crops = bop.load_bop_crops(instances, size, cfg.Dataset.PAD_FACTOR, vsd_size, BOP_VSD_PAD, progress=progress)
    return TestSet(
        images=crops.images, R=crops.R, t=crops.t, K_vsd=crops.K_vsd, vsd_size=vsd_size, depth_test=crops.depth,
        depth_known=crops.depth_known, in_image=crops.in_image, boxes=crops.boxes, K=crops.K,
        scene_id=crops.scene_id, im_id=crops.im_id, obj_id=ev.OBJ_ID, symmetries=_symmetries(cfg, path),
        name=bop.result_name(path), image_width=crops.image_width, num_targets=num_targets,
        inst_count=torch.tensor([i.inst_count for i in instances]) if ev.PROTOCOL == "bop19" else None,
        description=f"{len(instances)} instances of object {ev.OBJ_ID} in BOP folder {path}"
                    + (f" (BOP19 targets: {num_targets})" if num_targets is not None else ""),
    )


def check_evaluation_inputs(cfg: Config) -> None:
    """Cheap checks of the ``[Evaluation]`` inputs (paths exist, ``OBJ_ID`` for a BOP folder), so that a
    bad setting stops ``train.py`` before it trains. Raises :class:`~multipose.errors.ConfigError`."""
    ev = cfg.Evaluation

    def bad(key: str, what: str) -> ConfigError:
        return ConfigError(f"{cfg.origin('Evaluation', key)}: [Evaluation] {key} = '{ev[key]}': {what}")

    if ev.TEST_DATA_PATH:
        path = Path(ev.TEST_DATA_PATH)
        if path.is_dir():
            if not bop.is_bop_split(path):
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
        targets = Path(ev.TEST_DATA_PATH).resolve().parent / bop.TARGETS_FILE
        if cfg.Rendering.NORMALIZE_VERTICES:
            raise bad("PROTOCOL", "bop19 measures the BOP poses of the models as given (mm), which "
                                  "[Rendering] NORMALIZE_VERTICES would move and rescale: set it to false")
        if not targets.is_file() and not targets.with_name(targets.name + ".gz").is_file():
            raise bad("PROTOCOL", f"bop19 evaluates the targets of {targets}, which does not exist (it comes with "
                                  "the BOP dataset)")
