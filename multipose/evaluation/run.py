"""Evaluating a trained pose head: VSD recall against a random and the AAE codebook baseline.

One evaluation (:func:`evaluate_checkpoint`, ``evaluate.py``, and the end of ``train.py``):

1. the test set (:func:`load_test_set`, ``[Evaluation] TEST_DATA_PATH``):

   - empty: ``NUM_SAMPLES`` synthetic samples made like the validation set (training renderer,
     held-out backgrounds, augmentation), seed :data:`TEST_SEED`. The translation is known there
     (``[0, 0, RADIUS]``) and only the rotation is estimated. VSD needs a test (scene) depth; a
     synthetic sample has no occluder, so the **rendered ground-truth depth is the test depth**, and
     the estimated and ground-truth depths are rendered with the sample's crop intrinsics and ``t``;
   - a dataset file (our ``.npz`` or the original's pickle): the same; a pickle stores no ``t`` or
     ``K``, so ``t = [0, 0, RADIUS]`` and ``K`` is the crop of the centred training window for the
     ground-truth rotation (any fixed camera serves, since VSD compares two renders with the same one);
   - a BOP split folder (T-LESS ``test_primesense``, :mod:`multipose.evaluation.bop`): every
     instance of ``OBJ_ID`` cropped with its ground-truth box; the translation is estimated from the box
     the AAE way and the rotation corrected for the object's offset from the optical axis; VSD uses
     the scene's depth image in a window of :data:`BOP_VSD_PAD` times the box around the object,
     rendered at twice the crop size (:data:`BOP_VSD_SCALE`).

2. frozen encoder -> pose head: K hypotheses with confidences. Methods compared (every one gets the
   same VSD, rotation errors and, for BOP, translation error):

   - ``head``: the most confident hypothesis (what the model would output);
   - ``best-of-K``: the hypothesis with the lowest VSD error (an oracle: how good the set of hypotheses is);
   - ``random``: a rotation uniform on SO(3) (seeded), the floor;
   - ``codebook`` (``CODEBOOK_BASELINE`` / ``--baseline codebook``): the AAE's nearest neighbour among
     the codes of ``CODEBOOK_VIEWS x CODEBOOK_INPLANE`` clean renders (built once, cached in
     ``CACHE_DIR/codebooks/``);
   - ``stored``: rotations stored in a pickle test set (``Rs_predicted``, as the original's
     ``eval-pickle.py`` exported them), when it has them.

   A pickle of a BOP split's crops (``scene_ids``, ``img_ids``, ``obj_ids``, ``ts``: the original's
   ``bop2pickle.py`` or ``generate_dataset.py --from-bop``) puts those ids, the scene translation and
   the rotation corrected for it (the AAE's correction) in the results files, as ``eval-pickle.py``
   wrote them (which left the rotation uncorrected); VSD is still computed in the crop's camera.

3. outputs in ``out_dir`` (default ``<OUTPUT_PATH>/evaluation``): ``metrics.json`` (recall at
   ``VSD_THRESHOLD`` per method, mean VSD, rotation-error statistics, ms per image of encoder+head and
   encoder+codebook, model and codebook bytes), ``per-sample.csv``, BOP results files
   (``multipose_<dataset>-<split>.csv`` with the K hypotheses scored by their confidence, and
   ``aaecodebook_...`` for the codebook), and with ``SAVE_IMAGES`` ``recall.png`` (recall against the VSD
   threshold), ``rotation-error.png`` (histogram) and ``examples.png`` (input | GT depth | top
   hypothesis with its confidence and error).

Rotation errors are plain (:func:`~multipose.evaluation.metrics.re`) and, where the object's symmetries
are known (a BOP ``models_info.json``: ``MODELS_INFO`` or found beside the BOP folder),
symmetry-aware (:func:`~multipose.evaluation.metrics.re_sym`). VSD needs no symmetry annotation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from multipose.config import Config, check_crop_size, crop_size, num_hypotheses, render_distance, resolve_device
from multipose.data.crops import ViewRenderer, view_settings
from multipose.data.datasets import generate_samples
from multipose.data.io import load_samples
from multipose.data.sampling import make_generator
from multipose.errors import ConfigError, DataError, UserInputError
from multipose.evaluation import bop
from multipose.evaluation import metrics as pose_error  # pose_error.re: the name re stays the standard library's
from multipose.evaluation.metrics import re_sym, recall, symmetry_transformations, te, vsd
from multipose.evaluation.report import (
    plot_examples,
    plot_recall_curves,
    plot_rotation_errors,
    write_bop_results,
    write_json,
    write_table,
)
from multipose.geometry import random_rotations
from multipose.mesh import file_sha256, load_loss_mesh, load_mesh, normalization_key
from multipose.models import Codebook, Encoder, PoseHead, codebook_rotations, load_encoder
from multipose.models.head_checkpoint import load_head_checkpoint
from multipose.models.weights import ModelFileError, encoder_digest, encoder_mismatch, encoder_weights_path
from multipose.progress import progress_bar
from multipose.render import MeshRenderer
from multipose.timing import timed
from multipose.training.common import pose_checkpoints

logger = logging.getLogger(__name__)

__all__ = [
    "BOP_VSD_PAD",
    "BOP_VSD_SCALE",
    "EVALUATION_DIR",
    "TEST_SEED",
    "EvaluationResult",
    "TestSet",
    "check_evaluation_inputs",
    "codebook_from_config",
    "default_checkpoint",
    "evaluate_checkpoint",
    "evaluate_models",
    "load_pose_checkpoint",
    "module_bytes",
    "load_test_set",
]

#: Seed of generated synthetic test sets (validation sets use 0: the two never share samples).
TEST_SEED = 1
#: Folder of the results inside ``OUTPUT_PATH``.
EVALUATION_DIR = "evaluation"
#: BOP: side of the VSD window relative to the larger side of the ground-truth box.
BOP_VSD_PAD = 2.0
#: BOP: pixels of the VSD window relative to the encoder's crop size.
BOP_VSD_SCALE = 2
#: Most depth maps rendered in one call (memory of the rasterizer's fragments).
_RENDER_CHUNK = 64
_CODEBOOK_CACHE_VERSION = 2  # 2: icosphere viewpoints (1: Deserno)


# --------------------------------------------------------------------------------------------------
# Test sets
# --------------------------------------------------------------------------------------------------


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
    """

    __test__ = False  # not a pytest test class despite its name

    images: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    K_vsd: torch.Tensor
    vsd_size: int
    depth_test: torch.Tensor | None = None
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

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, S, S), got {tuple(self.images.shape)}")
        shapes = {"R": (n, 3, 3), "t": (n, 3), "K_vsd": (n, 3, 3), "depth_test": (n, self.vsd_size, self.vsd_size),
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

    def take(self, index: torch.Tensor) -> TestSet:
        """The instances at ``index (n,)``."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            is_per_sample = isinstance(value, torch.Tensor) and f.name != "symmetries"
            values[f.name] = value[index] if is_per_sample else value
        return TestSet(**values)


def _symmetries(cfg: Config, bop_folder: Path | None) -> torch.Tensor | None:
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
                       "MODELS_INFO and OBJ_ID for %s", path, ev.OBJ_ID, mismatch, cfg.Dataset.MODEL_PATH_DATA[0])
        return None
    try:
        R, _ = symmetry_transformations(info[ev.OBJ_ID])
    except ValueError as exc:
        raise DataError(f"{path}: object {ev.OBJ_ID}: {exc}") from None
    logger.info("symmetries of object %d from %s: %d rotations", ev.OBJ_ID, path, R.shape[0])
    return R.float()


def _size_mismatch(entry: dict, cfg: Config) -> str | None:
    """How a models_info entry's box ``size_x/y/z`` differs from the data mesh's (as loaded, up to one
    scale factor, for NORMALIZE_VERTICES), or None when they agree within 2 % (or the entry has no box)."""
    if not all(f"size_{axis}" in entry for axis in "xyz"):
        return None
    sizes = np.array([entry[f"size_{axis}"] for axis in "xyz"], dtype=float)
    vertices = load_mesh(cfg.Dataset.MODEL_PATH_DATA[0], normalize=cfg.Rendering.NORMALIZE_VERTICES).vertices
    mesh_sizes = (vertices.amax(dim=0) - vertices.amin(dim=0)).double().numpy()
    ratio = mesh_sizes / np.maximum(sizes, 1e-9)
    if np.all(np.abs(ratio / ratio.mean() - 1.0) < 0.02):
        return None
    return (f"box {' x '.join(f'{v:.1f}' for v in sizes)} mm, the data model's "
            f"{' x '.join(f'{v:.1f}' for v in mesh_sizes)}")


def _centred_crop_intrinsics(cfg: Config, R: torch.Tensor) -> torch.Tensor:
    """Crop intrinsics of the centred training window for rotations ``R (N, 3, 3)`` (no rendering)."""
    settings = view_settings(cfg)
    mesh = load_mesh(cfg.Dataset.MODEL_PATH_DATA[0], normalize=cfg.Rendering.NORMALIZE_VERTICES)
    renderer = ViewRenderer(mesh, settings, "cpu")
    _, _, K = renderer.windows(R.float(), torch.zeros(R.shape[0], 2))
    return K


def load_test_set(
    cfg: Config, device: torch.device | str = "cpu", num: int | None = None, progress: bool = True
) -> TestSet:
    """The test set of ``[Evaluation] TEST_DATA_PATH`` (see the module docstring); at most ``num``
    (default ``[Evaluation] NUM_SAMPLES``) instances, evenly spaced."""
    check_evaluation_inputs(cfg)
    ev = cfg.Evaluation
    num = int(num if num is not None else ev.NUM_SAMPLES)
    size = crop_size(cfg)
    obj_id = ev.OBJ_ID or 1
    path = ev.TEST_DATA_PATH
    if not path:
        samples = generate_samples(cfg, num, TEST_SEED, device, progress=progress)
        return TestSet(
            images=samples.images, R=samples.R, t=samples.t, K_vsd=samples.K, vsd_size=samples.image_size,
            obj_id=obj_id, symmetries=_symmetries(cfg, None), name="synthetic-test",
            description=f"{len(samples)} synthetic samples (seed {TEST_SEED}, {samples.image_size} px)",
        )
    path = Path(path)
    if path.is_dir():
        instances = bop.read_bop_split(path, ev.OBJ_ID, ev.MIN_VISIB_FRACT)
        chosen = bop.subsample(len(instances), num)
        instances = [instances[i] for i in chosen]
        vsd_size = BOP_VSD_SCALE * size
        crops = bop.load_bop_crops(instances, size, cfg.Dataset.PAD_FACTOR, vsd_size, BOP_VSD_PAD, progress=progress)
        split = path.resolve().name.split("_")[0] or "test"
        return TestSet(
            images=crops.images, R=crops.R, t=crops.t, K_vsd=crops.K_vsd, vsd_size=vsd_size, depth_test=crops.depth,
            boxes=crops.boxes, K=crops.K, scene_id=crops.scene_id, im_id=crops.im_id, obj_id=ev.OBJ_ID,
            symmetries=_symmetries(cfg, path), name=f"{path.resolve().parent.name or 'bop'}-{split}",
            description=f"{len(instances)} instances of object {ev.OBJ_ID} in BOP folder {path}",
        )
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


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def default_checkpoint(cfg: Config) -> Path:
    """``<OUTPUT_PATH>/models/model-best.pt``."""
    return pose_checkpoints(cfg).best_path


def load_pose_checkpoint(
    path: str | os.PathLike[str], cfg: Config | None = None, trust: bool = False
) -> tuple[PoseHead, dict[str, Any]]:
    """The pose head of a checkpoint, ours or the original's ``train.py``'s (eval mode, CPU), and the
    checkpoint dict; the original's is checked against the K of ``cfg``; ``trust``: allow an unsafe
    load (:func:`multipose.models.head_checkpoint.load_head_checkpoint`)."""
    return load_head_checkpoint(path, num_hypotheses(cfg) if cfg is not None else None, trust)


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def _codebook_path(cfg: Config, encoder: Encoder) -> Path:
    """Where the codebook of ``cfg`` and ``encoder`` is cached (the name hashes all it depends on)."""
    d, ev = cfg.Dataset, cfg.Evaluation
    settings = replace(view_settings(cfg), max_rel_offset=0.0)
    described = {
        "version": _CODEBOOK_CACHE_VERSION,
        "mesh_sha256": file_sha256(d.MODEL_PATH_DATA[0]),
        "normalize": normalization_key(cfg.Rendering.NORMALIZE_VERTICES),
        "view": settings.as_dict(),
        "views": ev.CODEBOOK_VIEWS,
        "inplane": ev.CODEBOOK_INPLANE,
        "encoder": encoder_digest(encoder),
    }
    key = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:24]
    return Path(d.CACHE_DIR) / "codebooks" / f"codebook-{ev.CODEBOOK_VIEWS}x{ev.CODEBOOK_INPLANE}-{key}.pt"


@torch.no_grad()
def codebook_from_config(
    cfg: Config, encoder: Encoder, device: torch.device | str = "cpu", progress: bool = True
) -> Codebook:
    """The AAE codebook for ``encoder``: codes of clean renders (object centred in the crop, on black,
    lit from the camera) at ``codebook_rotations(CODEBOOK_VIEWS, CODEBOOK_INPLANE)``. Cached as
    ``CACHE_DIR/codebooks/codebook-<V>x<I>-<key>.pt``, keyed by the mesh's content, the crop settings,
    the grid and the encoder's weights; a damaged file is built again. Returned on the CPU."""
    path = _codebook_path(cfg, encoder)
    if path.is_file():
        try:
            codebook = Codebook.load(path)
            logger.info("codebook: %d entries from %s", codebook.num_entries, path)
            return codebook
        except ModelFileError as exc:
            logger.warning("codebook %s is unusable (%s); building it again", path, exc)
    device = torch.device(device)
    ev = cfg.Evaluation
    rotations = codebook_rotations(ev.CODEBOOK_VIEWS, ev.CODEBOOK_INPLANE)
    mesh = load_mesh(cfg.Dataset.MODEL_PATH_DATA[0], normalize=cfg.Rendering.NORMALIZE_VERTICES)
    renderer = ViewRenderer(mesh, view_settings(cfg), device)
    encoder = encoder.to(device).eval()
    codes = []
    start = time.perf_counter()
    with progress_bar(
        total=rotations.shape[0], desc="building codebook", unit="view", disable=not progress, leave=False
    ) as bar:
        for chunk in rotations.split(cfg.Evaluation.BATCH_SIZE):
            images = renderer.render_centred(chunk).float() / 255.0  # 8-bit levels, as the training images
            codes.append(encoder.encode(images).float().cpu())
            bar.update(chunk.shape[0])
    codebook = Codebook(torch.cat(codes), rotations)
    codebook.save(path)
    logger.info("codebook: %d entries built in %.1f s, saved to %s", codebook.num_entries,
                time.perf_counter() - start, path)
    return codebook


# --------------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationResult:
    """What an evaluation computed: ``metrics`` is what ``metrics.json`` holds; ``errors[method]`` the
    per-instance VSD errors ``(N,)``; ``out_dir`` where the files are."""

    out_dir: Path
    metrics: dict[str, Any]
    errors: dict[str, torch.Tensor]

    @property
    def recall(self) -> dict[str, float]:
        """VSD recall per method (``head``, ``best-of-K``, ``random``, ``codebook``)."""
        return dict(self.metrics["recall"])

    def summary(self) -> str:
        """One line, e.g. ``VSD recall (e < 0.3, tau 20 mm, 100 samples): head 0.52, best-of-K 0.81, ...``."""
        s = self.metrics["settings"]
        parts = ", ".join(f"{k} {v:.3f}" for k, v in self.recall.items())
        return (f"VSD recall (e < {s['vsd_threshold']:g}, tau {s['vsd_tau']:g} mm, delta {s['vsd_delta']:g} mm, "
                f"{self.metrics['num_samples']} samples): {parts}")


def _render_depth(renderer: MeshRenderer, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor, size: int) -> torch.Tensor:
    """Depth maps ``(n, size, size)`` of poses ``R (n, 3, 3), t (n, 3)`` with ``K (n, 3, 3)``, in chunks."""
    parts = [
        renderer(R[i : i + _RENDER_CHUNK], t[i : i + _RENDER_CHUNK], K[i : i + _RENDER_CHUNK], size).depth
        for i in range(0, R.shape[0], _RENDER_CHUNK)
    ]
    return torch.cat(parts)


def _stats(values: torch.Tensor) -> dict[str, float]:
    v = values.double()
    return {"mean": float(v.mean()), "median": float(v.median()), "p90": float(torch.quantile(v, 0.9))}


@torch.no_grad()
def evaluate_models(
    cfg: Config,
    encoder: Encoder,
    head: PoseHead,
    test_set: TestSet,
    out_dir: str | os.PathLike[str],
    device: torch.device | str = "cpu",
    *,
    codebook: Codebook | None = None,
    extra: dict[str, Any] | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate ``head`` on ``encoder`` (and ``codebook``, if given) on ``test_set``; write the files
    of the module docstring to ``out_dir`` and return the numbers. ``extra`` is merged into
    ``metrics.json`` (e.g. the checkpoint's path and epoch)."""
    device = torch.device(device)
    ev = cfg.Evaluation
    out_dir = Path(out_dir)
    N = len(test_set)
    if N == 0:
        raise ValueError("the test set is empty")
    if test_set.images.shape[-1] != encoder.config.image_size:
        raise UserInputError(
            f"test images are {test_set.images.shape[-1]} px but the encoder takes {encoder.config.image_size} px "
            "([Dataset] CROP_SIZE must match the encoder; leave it empty to follow the encoder)"
        )
    encoder = encoder.to(device).eval()
    head = head.to(device).eval()
    codebook = codebook.to(device) if codebook is not None else None
    K_hyp = head.config.num_hypotheses

    data_mesh = load_mesh(cfg.Dataset.MODEL_PATH_DATA[0], normalize=cfg.Rendering.NORMALIZE_VERTICES)
    if ev.VSD_MESH_FACES > 0:
        vsd_mesh = load_loss_mesh(cfg.Dataset.MODEL_PATH_DATA[0], target_faces=ev.VSD_MESH_FACES,
                                  cache_dir=cfg.Dataset.CACHE_DIR, normalize=cfg.Rendering.NORMALIZE_VERTICES)
    else:
        vsd_mesh = data_mesh
    renderer = MeshRenderer(vsd_mesh).to(device)
    vertices = data_mesh.vertices.to(device)
    settings = view_settings(cfg)
    K_train = settings.K_tensor(device)
    symmetries = test_set.symmetries.to(device) if test_set.symmetries is not None else None
    random_R = random_rotations(N, generator=make_generator(cfg.Training.RANDOM_SEED, "evaluation-random"))

    stored = test_set.R_stored is not None
    methods = ["head", "best-of-K", "random"] + (["codebook"] if codebook is not None else []) + (
        ["stored"] if stored else [])
    vsd_err = {m: [] for m in methods}
    rot_err = {m: [] for m in methods}
    rot_sym = {m: [] for m in methods}
    trans_err = {m: [] for m in methods}
    conf_top, hyp_vsd = [], []
    poses = {"head_R": [], "head_t": [], "conf": [], "cb_R": [], "cb_t": [], "cb_sim": [], "st_R": [], "st_t": []}
    seconds = {"encoder": 0.0, "head": 0.0, "codebook": 0.0}
    examples_at = set(bop.subsample(N, ev.NUM_EXAMPLES).tolist()) if ev.SAVE_IMAGES and ev.NUM_EXAMPLES else set()
    examples: dict[str, list] = {"index": [], "gt": [], "top": [], "codebook": []}

    # warm-up (first calls allocate and pick kernels), so timings measure steady state
    warm = test_set.images[: min(N, ev.BATCH_SIZE)].to(device)
    code = encoder.encode(warm)
    head(code)
    if codebook is not None:
        codebook.lookup(code)

    bar = progress_bar(total=N, desc="evaluating", unit="sample", disable=not progress, leave=False)
    for start in range(0, N, ev.BATCH_SIZE):
        idx = torch.arange(start, min(N, start + ev.BATCH_SIZE))
        B = idx.numel()
        images = test_set.images[idx].to(device)
        code, dt = timed(partial(encoder.encode, images), device)
        seconds["encoder"] += dt
        out, dt = timed(partial(head, code), device)
        seconds["head"] += dt
        views = [out.R, random_R[idx].to(device)[:, None]]  # (B, K, 3, 3), (B, 1, 3, 3)
        if codebook is not None:
            match, dt = timed(partial(codebook.lookup, code), device)
            seconds["codebook"] += dt
            views.append(match.rotations)
        if stored:
            views.append(test_set.R_stored[idx].to(device)[:, None])
        R_view = torch.cat(views, dim=1)  # (B, M, 3, 3): K hypotheses, random[, codebook][, stored]
        M = R_view.shape[1]
        R_gt, t_gt = test_set.R[idx].to(device), test_set.t[idx].to(device)
        K_vsd = test_set.K_vsd[idx].to(device)
        if test_set.boxes is not None:
            boxes = test_set.boxes[idx].to(device).repeat_interleave(M, 0)
            K_cam = test_set.K[idx].to(device).repeat_interleave(M, 0)
            t_est = bop.estimate_translation(R_view.flatten(0, 1), boxes, K_cam, K_train, settings.distance, vertices)
            R_est = bop.correct_rotation(R_view.flatten(0, 1), t_est).reshape(B, M, 3, 3)
            t_est = t_est.reshape(B, M, 3)
        else:
            R_est, t_est = R_view, t_gt[:, None].expand(B, M, 3)
        R_out, t_out = R_est, t_est  # what the results files hold
        if test_set.t_scene is not None:  # crops of scene instances: their scene pose, as the AAE corrects it
            t_out = test_set.t_scene[idx].to(device)[:, None].expand(B, M, 3)
            R_out = bop.correct_rotation(R_view.flatten(0, 1), t_out.flatten(0, 1)).reshape(B, M, 3, 3)
        size = test_set.vsd_size
        depth_gt = _render_depth(renderer, R_gt, t_gt, K_vsd, size)  # (B, V, V)
        depth_est = _render_depth(renderer, R_est.flatten(0, 1), t_est.flatten(0, 1),
                                  K_vsd.repeat_interleave(M, 0), size).reshape(B, M, size, size)
        depth_test = test_set.depth_test[idx].to(device) if test_set.depth_test is not None else depth_gt
        errors = vsd(depth_est, depth_gt[:, None].expand_as(depth_est), depth_test[:, None].expand_as(depth_est),
                     K_vsd[:, None].expand(B, M, 3, 3), ev.VSD_DELTA, ev.VSD_TAU)[..., 0]  # (B, M)
        r_err = pose_error.re(R_est, R_gt[:, None])  # (B, M)
        r_sym = re_sym(R_est, R_gt[:, None], symmetries)
        t_err = te(t_est, t_gt[:, None])
        top = out.confidence.argmax(dim=1)
        best = errors[:, :K_hyp].argmin(dim=1)
        rows = torch.arange(B, device=device)
        picks = {"head": top, "best-of-K": best, "random": torch.full_like(top, K_hyp)}
        if codebook is not None:
            picks["codebook"] = torch.full_like(top, K_hyp + 1)
        if stored:
            picks["stored"] = torch.full_like(top, M - 1)
        for m, col in picks.items():
            vsd_err[m].append(errors[rows, col].cpu())
            rot_err[m].append(r_err[rows, col].cpu())
            rot_sym[m].append(r_sym[rows, col].cpu())
            trans_err[m].append(t_err[rows, col].cpu())
        conf_top.append(out.confidence[rows, top].cpu())
        hyp_vsd.append(errors[:, :K_hyp].cpu())
        poses["head_R"].append(R_out[:, :K_hyp].cpu())
        poses["head_t"].append(t_out[:, :K_hyp].cpu())
        poses["conf"].append(out.confidence.cpu())
        if codebook is not None:
            poses["cb_R"].append(R_out[:, K_hyp + 1 : K_hyp + 2].cpu())
            poses["cb_t"].append(t_out[:, K_hyp + 1 : K_hyp + 2].cpu())
            poses["cb_sim"].append(match.similarity.cpu())
        if stored:
            poses["st_R"].append(R_out[:, -1:].cpu())
            poses["st_t"].append(t_out[:, -1:].cpu())
        for j, i in enumerate(idx.tolist()):
            if i in examples_at:
                examples["index"].append(i)
                examples["gt"].append(depth_gt[j].cpu())
                examples["top"].append(depth_est[j, int(top[j])].cpu())
                if codebook is not None:
                    examples["codebook"].append(depth_est[j, K_hyp + 1].cpu())
        bar.update(B)
    bar.close()

    vsd_all = {m: torch.cat(v) for m, v in vsd_err.items()}
    re_all = {m: torch.cat(v) for m, v in rot_err.items()}
    re_sym_all = {m: torch.cat(v) for m, v in rot_sym.items()}
    te_all = {m: torch.cat(v) for m, v in trans_err.items()}
    conf_top_all = torch.cat(conf_top)
    threshold = ev.VSD_THRESHOLD
    ms = {k: 1000.0 * v / N for k, v in seconds.items()}
    timing = {"encoder": ms["encoder"], "head": ms["head"], "encoder+head": ms["encoder"] + ms["head"]}
    sizes = {"encoder": module_bytes(encoder), "head": module_bytes(head)}
    if codebook is not None:
        timing.update({"codebook_lookup": ms["codebook"], "encoder+codebook": ms["encoder"] + ms["codebook"]})
        sizes["codebook"] = int(codebook.nbytes)
    known_t = test_set.boxes is None
    metrics: dict[str, Any] = {
        "test_set": test_set.description,
        "num_samples": N,
        "num_hypotheses": K_hyp,
        "device": str(device),
        "recall": {m: recall(vsd_all[m], threshold) for m in methods},
        "mean_vsd": {m: float(vsd_all[m].mean()) for m in methods},
        "rotation_error_deg": {m: _stats(re_all[m]) for m in methods},
        "rotation_error_sym_deg": {m: _stats(re_sym_all[m]) for m in methods} if symmetries is not None else None,
        "translation_error_mm": None if known_t else {m: _stats(te_all[m]) for m in methods},
        "mean_top_confidence": float(conf_top_all.mean()),
        "ms_per_image": timing,
        "bytes": sizes,
        "codebook_entries": codebook.num_entries if codebook is not None else None,
        "settings": {
            "vsd_delta": ev.VSD_DELTA, "vsd_tau": ev.VSD_TAU, "vsd_threshold": threshold, "vsd_cost": "step",
            "visibility": "bop19", "vsd_image_size": test_set.vsd_size,
            "vsd_mesh_faces": vsd_mesh.num_faces, "translation": "known" if known_t else "from the box (AAE)",
            "test_depth": "rendered ground truth (no occlusion)" if test_set.depth_test is None else "scene depth",
        },
        **(extra or {}),
    }

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"metrics": "metrics.json", "per_sample": "per-sample.csv", "bop_head": f"multipose_{test_set.name}.csv"}
    columns: dict[str, Any] = {
        "index": list(range(N)), "scene_id": test_set.scene_id, "im_id": test_set.im_id,
        "top_confidence": conf_top_all.tolist(),
    }
    for m in methods:
        columns[f"vsd_{m}"] = vsd_all[m].tolist()
        columns[f"re_{m}"] = re_all[m].tolist()
        if symmetries is not None:
            columns[f"re_sym_{m}"] = re_sym_all[m].tolist()
        if not known_t:
            columns[f"te_{m}"] = te_all[m].tolist()
    hyp = torch.cat(hyp_vsd)
    for k in range(K_hyp):
        columns[f"vsd_hypothesis{k + 1}"] = hyp[:, k].tolist()
    write_table(out_dir / files["per_sample"], columns)
    per_image_s = torch.full((N,), (seconds["encoder"] + seconds["head"]) / N)
    write_bop_results(out_dir / files["bop_head"], test_set.scene_id, test_set.im_id, test_set.obj_id,
                      torch.cat(poses["conf"]), torch.cat(poses["head_R"]), torch.cat(poses["head_t"]), per_image_s)
    if codebook is not None:
        files["bop_codebook"] = f"aaecodebook_{test_set.name}.csv"
        write_bop_results(out_dir / files["bop_codebook"], test_set.scene_id, test_set.im_id, test_set.obj_id,
                          torch.cat(poses["cb_sim"]), torch.cat(poses["cb_R"]), torch.cat(poses["cb_t"]),
                          torch.full((N,), (seconds["encoder"] + seconds["codebook"]) / N))
    if stored:  # the original's eval-pickle.py exported these with score -1 and time -1
        files["bop_stored"] = f"stored_{test_set.name}.csv"
        write_bop_results(out_dir / files["bop_stored"], test_set.scene_id, test_set.im_id, test_set.obj_id,
                          torch.full((N, 1), -1.0), torch.cat(poses["st_R"]), torch.cat(poses["st_t"]),
                          torch.full((N,), -1.0))
    if ev.SAVE_IMAGES:
        title = f"{test_set.description}; tau {ev.VSD_TAU:g} mm, delta {ev.VSD_DELTA:g} mm"
        files["recall_plot"] = "recall.png"
        plot_recall_curves(out_dir / files["recall_plot"], vsd_all, threshold, title)
        rot, label = (re_sym_all, "symmetry-aware rotation error (degrees)") if symmetries is not None else (
            re_all, "rotation error (degrees; symmetries unknown)")
        files["rotation_plot"] = "rotation-error.png"
        plot_rotation_errors(out_dir / files["rotation_plot"], rot, label, title)
        if examples["index"]:
            files["examples"] = "examples.png"
            order = examples["index"]
            depths = {"GT depth": torch.stack(examples["gt"]), "top hypothesis": torch.stack(examples["top"])}
            notes = {"top hypothesis": [f"conf {conf_top_all[i]:.2f} VSD {vsd_all['head'][i]:.2f}" for i in order]}
            if codebook is not None:
                depths["codebook"] = torch.stack(examples["codebook"])
                notes["codebook"] = [f"VSD {vsd_all['codebook'][i]:.2f}" for i in order]
            titles = [f"#{i} ({int(test_set.scene_id[i])}/{int(test_set.im_id[i])})" if test_set.boxes is not None
                      else f"#{i}" for i in order]
            plot_examples(out_dir / files["examples"], test_set.images[order], depths, titles, notes)
    metrics["files"] = files
    write_json(out_dir / files["metrics"], metrics)
    result = EvaluationResult(out_dir=out_dir, metrics=metrics, errors=vsd_all)
    logger.info("%s; %s", result.summary(), out_dir)
    return result


def evaluate_checkpoint(
    cfg: Config,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    device: torch.device | str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    num_samples: int | None = None,
    codebook: bool | None = None,
    progress: bool = True,
    trust: bool = False,
) -> EvaluationResult:
    """Evaluate a ``train.py`` checkpoint (default ``<OUTPUT_PATH>/models/model-best.pt``) with the
    encoder of ``cfg`` on the test set of ``cfg``; results go to ``out_dir`` (default
    ``<OUTPUT_PATH>/evaluation``). ``num_samples`` and ``codebook`` override ``[Evaluation]
    NUM_SAMPLES`` and ``CODEBOOK_BASELINE``. Raises :class:`~multipose.errors.UserInputError`
    subclasses for bad inputs (checkpoint, encoder, test data); ``trust`` allows an unsafe load of the
    checkpoint (``--trust-checkpoint``)."""
    check_evaluation_inputs(cfg)
    device = resolve_device(cfg) if device is None else torch.device(device)
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(cfg)
    head, state = load_pose_checkpoint(path, cfg, trust)
    encoder = load_encoder(cfg)
    stored = state.get("encoder_args")
    if stored is not None and stored != encoder.config.to_dict():
        raise ModelFileError(
            f"{path}: the head was trained on an encoder with {stored}, but [Dataset] ENCODER_WEIGHTS gives "
            f"{encoder.config.to_dict()}; evaluate with the training run's encoder"
        )
    mismatch = encoder_mismatch(state, encoder_digest(encoder), path, encoder_weights_path(cfg))
    if mismatch:
        raise ModelFileError(f"{mismatch}; its codes would mean nothing to the head: set [Dataset] ENCODER_WEIGHTS "
                             "to the encoder the head was trained with")
    if encoder.config.latent_size != head.config.input_dim:
        raise ModelFileError(f"{path}: the head takes codes of size {head.config.input_dim}, the encoder gives "
                             f"{encoder.config.latent_size}")
    check_crop_size(cfg, encoder.config.image_size, f"the encoder {encoder_weights_path(cfg)}")
    test_set = load_test_set(cfg, device, num=num_samples, progress=progress)
    use_codebook = cfg.Evaluation.CODEBOOK_BASELINE if codebook is None else codebook
    cb = codebook_from_config(cfg, encoder, device, progress=progress) if use_codebook else None
    out = Path(out_dir) if out_dir is not None else Path(cfg.Training.OUTPUT_PATH) / EVALUATION_DIR
    extra = {"checkpoint": os.fspath(path), "epoch": state.get("epoch"),
             "encoder": os.fspath(cfg.Dataset.ENCODER_WEIGHTS)}
    return evaluate_models(cfg, encoder, head, test_set, out, device, codebook=cb, extra=extra, progress=progress)

