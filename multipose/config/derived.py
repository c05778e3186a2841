"""Values derived from a configuration (K, the loss constants, the crop size, the render distance, the
device), computed from its values alone: nothing here reads a file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from multipose.config.compound_types import _parse_view_sampling
from multipose.config.core import Config
from multipose.core.settings import DEFAULT_DEPTH_MAX, ENCODER_INPUT_SIZES, LossParameters, ViewSampling
from multipose.infra.errors import ConfigError

if TYPE_CHECKING:
    import torch


def encoder_arch(cfg: Config) -> str:
    """``[Encoder] ARCH`` with ``auto`` resolved from ``ENCODER_WEIGHTS`` alone: ``aae`` for the
    original's ``.npy`` weights, else ``small`` (a ``.pt`` file's stored architecture is checked
    against this when it is loaded)."""
    arch = cfg.Encoder.ARCH
    if arch != "auto":
        return arch
    return "aae" if str(cfg.Dataset.ENCODER_WEIGHTS).lower().endswith(".npy") else "small"


def crop_size(cfg: Config) -> int:
    """Side of the training crops: ``[Dataset] CROP_SIZE``, or, when empty, the input size of the
    ``[Encoder] ARCH`` preset (:func:`encoder_arch`). The entry scripts fill an empty ``CROP_SIZE`` from
    the encoder file once, when it records another size
    (:func:`multipose.experiment.encoders.with_encoder_crop_size`)."""
    size = cfg.Dataset.CROP_SIZE
    return int(size) if size is not None else ENCODER_INPUT_SIZES[encoder_arch(cfg)]


def check_crop_size(cfg: Config, encoder_size: int, encoder: str = "the encoder") -> None:
    """Raise :class:`ConfigError` unless the training crops (:func:`crop_size`) are ``encoder_size``
    pixels, the input size of ``encoder`` (a description for the message)."""
    size = crop_size(cfg)
    if size != encoder_size:
        shown = "empty: the encoder's size as the config tells it" if cfg.Dataset.CROP_SIZE is None else "set"
        raise ConfigError(
            f"{cfg.origin('Dataset', 'CROP_SIZE')}: [Dataset] CROP_SIZE = {size} ({shown}): expected the input size "
            f"{encoder_size} of {encoder}; set [Dataset] CROP_SIZE: {encoder_size}"
        )


def num_hypotheses(cfg: Config) -> int:
    """K, the number of pose hypotheses: ``[Rendering] VIEWS`` as an int, or the length of its list."""
    views = cfg.Rendering.VIEWS
    return views if isinstance(views, int) else len(views)


def num_objects(cfg: Config) -> int:
    """N, the objects of one head: the length of ``[Dataset] MODEL_PATH_DATA``'s list (1 for one path)."""
    paths = cfg.Dataset.MODEL_PATH_DATA
    return len(paths) if isinstance(paths, tuple) else 1


def check_objects(cfg: Config) -> None:
    """Raise :class:`ConfigError` unless the per-object keys name N objects alike (``MODEL_PATH_LOSS``, ``T``,
    ``VALID_DATA_PATH`` and ``[Evaluation] OBJ_ID`` when set) and the loss fits N (several objects need
    ``vsd-union-multi-object``)."""
    n = num_objects(cfg)
    loss = cfg.Dataset.MODEL_PATH_LOSS
    counts = {("Dataset", "MODEL_PATH_LOSS"): len(loss) if isinstance(loss, tuple) else 1}
    if cfg.Rendering.T is not None:
        counts[("Rendering", "T")] = len(cfg.Rendering.T) if isinstance(cfg.Rendering.T[0], tuple) else 1
    if n > 1 and cfg.Dataset.VALID_DATA_PATH:
        counts[("Dataset", "VALID_DATA_PATH")] = len(cfg.Dataset.VALID_DATA_PATH)
    obj_id = cfg.Evaluation.OBJ_ID  # with CHECKPOINTS: the ids of its runs, not of this head
    if obj_id not in (None, "all") and (n > 1 or isinstance(obj_id, tuple)) and not cfg.Evaluation.CHECKPOINTS:
        counts[("Evaluation", "OBJ_ID")] = len(obj_id) if isinstance(obj_id, tuple) else 1
    for (section, key), count in counts.items():
        if count != n:
            raise ConfigError(
                f"{cfg.origin(section, key)}: [{section}] {key} names {count} object(s), but [Dataset] "
                f"MODEL_PATH_DATA names {n}: give one entry per object, in the same order"
            )
    if n > 1 and cfg.Training.LOSS != "vsd-union-multi-object":
        raise ConfigError(
            f"{cfg.origin('Training', 'LOSS')}: [Training] LOSS = '{cfg._shown('Training', 'LOSS')}': a head of "
            f"{n} objects needs LOSS: vsd-union-multi-object (it picks each sample's object block; "
            f"{cfg.Training.LOSS} would read the outputs as one object's)"
        )
    if n == 1 and cfg.Training.CLASSIFY_OBJECTS:
        raise ConfigError(f"{cfg.origin('Training', 'CLASSIFY_OBJECTS')}: [Training] CLASSIFY_OBJECTS = true: a "
                          "classifier needs several objects ([Dataset] MODEL_PATH_DATA a list of N > 1 paths)")
    if n > 1 and cfg.Dataset.ENCODER_WEIGHTS == "auto":
        raise ConfigError(
            f"{cfg.origin('Dataset', 'ENCODER_WEIGHTS')}: [Dataset] ENCODER_WEIGHTS = auto pretrains an encoder "
            f"of one object; a head of {n} objects needs an encoder of all of them: give its file (e.g. the AAE's "
            "encoder of T-LESS objects 1-18, encoder.npy)"
        )
    _check_pbr(cfg, n)
    ev = cfg.Evaluation
    if ev.OBJ_ID == "all" and not ev.CHECKPOINTS:
        raise ConfigError(f"{cfg.origin('Evaluation', 'OBJ_ID')}: [Evaluation] OBJ_ID = all means every object of "
                          "[Evaluation] CHECKPOINTS (one run per object), which is empty: give the id(s), or "
                          "CHECKPOINTS")
    if ev.CHECKPOINTS and n > 1:
        raise ConfigError(f"{cfg.origin('Evaluation', 'CHECKPOINTS')}: [Evaluation] CHECKPOINTS gives one run per "
                          f"object, but [Dataset] MODEL_PATH_DATA names {n} objects of one head: use one of the two")
    if n > 1 and cfg.Training.HEAD == "population":
        raise ConfigError(f"{cfg.origin('Training', 'HEAD')}: [Training] HEAD = population poses one object; use "
                          f"HEAD: regression for a head of {n} objects")


def _check_pbr(cfg: Config, n: int) -> None:
    """``PBR_PATH`` needs ``PBR_OBJ_IDS``, one id per object."""
    d = cfg.Dataset
    if d.PBR_PATH and d.PBR_OBJ_IDS is None:
        raise ConfigError(f"{cfg.origin('Dataset', 'PBR_PATH')}: [Dataset] PBR_PATH needs PBR_OBJ_IDS, the BOP id of "
                          "each object in it (e.g. PBR_OBJ_IDS: 10, or a list in the order of MODEL_PATH_DATA)")
    ids = d.PBR_OBJ_IDS
    count = len(ids) if isinstance(ids, tuple) else 1
    if d.PBR_PATH and (ids == "all" or count != n):
        raise ConfigError(f"{cfg.origin('Dataset', 'PBR_OBJ_IDS')}: [Dataset] PBR_OBJ_IDS = "
                          f"'{cfg._shown('Dataset', 'PBR_OBJ_IDS')}': expected {n} BOP id(s), one per object of "
                          "MODEL_PATH_DATA, in its order")


def validation_metric(cfg: Config) -> str:
    """The validation figure that picks ``model-best.pt`` (``[Training] VALIDATION_METRIC``, auto resolved):
    ``"loss"`` or ``"top_depth"``."""
    metric = cfg.Training.VALIDATION_METRIC
    if metric == "auto":
        return "top_depth" if cfg.Training.HEAD == "population" else "loss"
    return metric


def _same_or_error(cfg: Config, a: tuple[str, str], b: tuple[str, str], what: str) -> None:
    va, vb = cfg[a[0]][a[1]], cfg[b[0]][b[1]]
    if va is not None and vb is not None and va != vb:
        raise ConfigError(
            f"{cfg.origin(*a)}: [{a[0]}] {a[1]} = '{cfg._shown(*a)}': expected the same value as "
            f"[{b[0]}] {b[1]} = '{cfg._shown(*b)}' (both set {what} for LOSS {cfg.Training.LOSS}); "
            "remove one"
        )


def loss_parameters(cfg: Config) -> LossParameters:
    """The loss constants, from ``[Loss_parameters]`` or the original's ``[Training] LOSS_PARAMS``.

    ``vsd-union``: depth_max = DEPTH_MAX or LOSS_PARAMS or 30; gamma = GAMMA or 1/K.
    ``vsd-union-var-gamma``: gamma = GAMMA or LOSS_PARAMS (one is required); depth_max = DEPTH_MAX or 30.
    LOSS_PARAMS and the key it stands for may both be set only to the same value.
    """
    tr, lp = cfg.Training, cfg.Loss_parameters
    if tr.LOSS in ("vsd-union", "vsd-union-multi-object"):
        _same_or_error(cfg, ("Training", "LOSS_PARAMS"), ("Loss_parameters", "DEPTH_MAX"),
                       "the depth clamp d_max in mm")
        depth_max = next(v for v in (lp.DEPTH_MAX, tr.LOSS_PARAMS, DEFAULT_DEPTH_MAX) if v is not None)
        gamma = lp.GAMMA if lp.GAMMA is not None else 1.0 / num_hypotheses(cfg)
    else:
        _same_or_error(cfg, ("Training", "LOSS_PARAMS"), ("Loss_parameters", "GAMMA"), "gamma")
        gamma = lp.GAMMA if lp.GAMMA is not None else tr.LOSS_PARAMS
        if gamma is None:
            raise ConfigError(
                f"{cfg.origin('Training', 'LOSS')}: [Training] LOSS = '{cfg._shown('Training', 'LOSS')}': "
                "expected [Loss_parameters] GAMMA (or the original's [Training] LOSS_PARAMS) to be set: "
                "this loss takes gamma from the config"
            )
        depth_max = lp.DEPTH_MAX if lp.DEPTH_MAX is not None else DEFAULT_DEPTH_MAX
    return LossParameters(depth_max=float(depth_max), pose_max=float(lp.POSE_MAX), gamma=float(gamma),
                          depth_normalization=lp.DEPTH_NORMALIZATION)


#: Camera distance (mm) of the training renders when neither ``RADIUS`` nor ``T`` is set (the AAE's).
DEFAULT_RADIUS_MM = 700.0


def render_distance(cfg: Config) -> float:
    """Camera distance (mm) of the training renders: ``[Dataset] RADIUS``; if empty, the z of an
    explicit ``[Rendering] T`` (the original rendered its training images at T's z), else 700."""
    if cfg.Dataset.RADIUS is not None:
        return float(cfg.Dataset.RADIUS)
    if cfg.Rendering.T is not None:
        return float(cfg.Rendering.T[2])
    return DEFAULT_RADIUS_MM


def view_sampling(cfg: Config) -> ViewSampling:
    """``[Training] VIEW_SAMPLING`` split into base and ``-hard`` / ``-reuse`` flags."""
    return _parse_view_sampling(cfg.Training.VIEW_SAMPLING)


def resolve_device(cfg: Config) -> torch.device:
    """``[Training] DEVICE`` as a :class:`torch.device`; ``auto`` picks CUDA when available.

    ``cuda`` without a usable GPU is a :class:`~multipose.infra.errors.ConfigError`, not a crash later.
    """
    import torch  # lazy: checking a config file should not pay for importing torch

    name = cfg.Training.DEVICE
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{cfg.origin('Training', 'DEVICE')}: [Training] DEVICE = '{cfg._shown('Training', 'DEVICE')}': "
            "expected auto or cpu: PyTorch sees no CUDA GPU on this machine "
            "(DEVICE: auto uses one when present)"
        )
    return torch.device(name)
