"""The run folder (``[Training] OUTPUT_PATH``): the name of everything a run writes there, and its config guard.

::

    <OUTPUT_PATH>/
        config.cfg              the resolved config the run was started with (every key)
        encoder.pt              the pretrained encoder (ENCODER_WEIGHTS: auto, train_encoder.py)
        encoder/                pretraining checkpoints, train-loss.csv, loss.png, previews
        models/                 pose-head checkpoints model-epoch{N}.pt and model-best.pt
        train-loss.csv, validation-loss.csv, loss.png, images/
        validation.npz          the generated validation set
        validation-obj<n>.npz   a head of several objects: object n's generated validation set
        timings.json            wall seconds per phase of train.py
        evaluation/             metrics.json, per-sample.csv, BOP results files, figures
        tensorboard/            TensorBoard event files: head/ (training, evaluation), encoder/ (pretraining)

Re-running the same command resumes; running a *different* config into the same folder is refused
(naming the keys that differ) unless ``--force``, because mixing two experiments' epochs in one folder
silently is how results get lost. Keys that cannot change what the finished epochs computed
(:data:`RESUMABLE_KEYS`: how long to train, where to run, what to save, how many processes cut PBR crops) may
differ.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from multipose.config import Config, load_config_text
from multipose.infra.atomic import atomic_write_text
from multipose.infra.checkpoint import CheckpointStore
from multipose.infra.errors import RunFolderError, UserInputError

logger = logging.getLogger(__name__)

__all__ = [
    "ENCODER_FILE",
    "ENCODER_SIZE_ORIGIN",
    "RESUMABLE_KEYS",
    "RunFolder",
    "RunFolderError",
    "config_differences",
    "describe_changes",
    "encoder_weights_path",
    "pose_checkpoints",
    "prepare_run_folder",
    "stored_config_changes",
    "write_resolved_config",
]

#: File name of the pretrained encoder inside ``[Training] OUTPUT_PATH`` (``ENCODER_WEIGHTS: auto``).
ENCODER_FILE = "encoder.pt"
#: Marks a ``CROP_SIZE`` filled from the encoder file (:func:`multipose.experiment.encoders.with_encoder_crop_size`).
ENCODER_SIZE_ORIGIN = "(the encoder's input size)"

#: ``(section, key)`` that may change between a run and its resumption.
RESUMABLE_KEYS = frozenset(
    {
        ("Training", "NUM_ITER"),
        ("Training", "EARLY_STOPPING"),
        ("Training", "STOPPING_WINDOW"),
        ("Training", "STOPPING_TIME_LIMIT"),
        ("Training", "MAX_HOURS"),
        ("Training", "DEVICE"),
        ("Training", "SAVE_IMAGES"),
        ("Dataset", "CACHE_DIR"),
        ("Dataset", "PBR_WORKERS"),
        ("Encoder", "NUM_ITER"),
        ("Encoder", "SAVE_INTERVAL"),
        ("Encoder", "LOG_INTERVAL"),
        ("Evaluation", "*"),
        ("Sampling", "*"),
    }
)


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is created by building one)."""

    root: Path

    @classmethod
    def of(cls, cfg: Config) -> RunFolder:
        """The run folder of ``cfg``: ``[Training] OUTPUT_PATH``."""
        return cls(Path(cfg.Training.OUTPUT_PATH))

    @property
    def config(self) -> Path:
        return self.root / "config.cfg"

    @property
    def encoder(self) -> Path:
        return self.root / ENCODER_FILE

    @property
    def encoder_dir(self) -> Path:
        """Pretraining checkpoints, its loss log and figures."""
        return self.root / "encoder"

    @property
    def models(self) -> Path:
        """Pose-head checkpoints."""
        return self.root / "models"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def validation(self) -> Path:
        """The generated validation set."""
        return self.root / "validation.npz"

    def object_validation(self, n: int) -> Path:
        """The generated validation set of object ``n`` of a head of several objects."""
        return self.root / f"validation-obj{n}.npz"

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    @property
    def board(self) -> Path:
        """TensorBoard event files: ``head/`` (training), ``encoder/`` (pretraining)."""
        return self.root / "tensorboard"

    @property
    def train_loss(self) -> Path:
        return self.root / "train-loss.csv"

    @property
    def validation_loss(self) -> Path:
        return self.root / "validation-loss.csv"

    @property
    def loss_plot(self) -> Path:
        return self.root / "loss.png"


def encoder_weights_path(cfg: Config) -> Path:
    """``[Dataset] ENCODER_WEIGHTS`` as a path; ``auto`` is ``<[Training] OUTPUT_PATH>/encoder.pt``."""
    weights = cfg.Dataset.ENCODER_WEIGHTS
    return RunFolder.of(cfg).encoder if weights == "auto" else Path(weights)


def pose_checkpoints(cfg: Config) -> CheckpointStore:
    """The pose-head checkpoints of a run: ``<OUTPUT_PATH>/models/model-epoch{N}.pt`` (the newest
    ``KEEP_CHECKPOINTS``) and ``model-best.pt``."""
    return CheckpointStore(RunFolder.of(cfg).models, prefix="model", keep=cfg.Training.KEEP_CHECKPOINTS)


def write_resolved_config(cfg: Config, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``out_dir/config.cfg`` (every key, resolved) atomically; returns its path."""
    return atomic_write_text(RunFolder(Path(out_dir)).config, cfg.to_ini())


def config_differences(old: Config, new: Config, allowed: Iterable[tuple[str, str]] = RESUMABLE_KEYS) -> list[str]:
    """``"[Section] KEY: old -> new"`` for every key whose value differs, except ``allowed`` ones
    (``("Section", "*")`` allows a whole section)."""
    allowed = set(allowed)
    changes = []
    for section in new:
        for key, value in new[section].items():
            if (section, key) in allowed or (section, "*") in allowed:
                continue
            before = old[section][key]
            if (section, key) == ("Dataset", "CROP_SIZE") and before is None and ENCODER_SIZE_ORIGIN in new.origin(
                    section, key):
                continue  # the size the empty value meant, read from the same encoder file (a run of an older version)
            if before != value:
                changes.append(f"[{section}] {key}: {before!r} -> {value!r}")
    return changes


def stored_config_changes(cfg: Config) -> list[str] | None:
    """How ``<OUTPUT_PATH>/config.cfg`` differs from ``cfg`` outside :data:`RESUMABLE_KEYS`: a list of
    ``"[Section] KEY: old -> new"`` (empty when the same), or None when the folder holds no config.
    Raises :class:`RunFolderError` when that file cannot be read."""
    folder = RunFolder.of(cfg)
    if not folder.config.is_file():
        return None
    try:  # DEVICE may change between a run and its resumption
        old = load_config_text(folder.config.read_text(), source=folder.config, check_device=False)
    except (UserInputError, OSError, UnicodeDecodeError) as exc:
        raise RunFolderError(
            f"{folder.root}: its config.cfg cannot be read ({exc}); use another [Training] OUTPUT_PATH or --force"
        ) from exc
    return config_differences(old, cfg)


def describe_changes(changes: list[str], most: int = 5) -> str:
    """The first ``most`` config changes, joined for a one-line message."""
    shown = "; ".join(changes[:most])
    return shown + (f"; and {len(changes) - most} more" if len(changes) > most else "")


def prepare_run_folder(cfg: Config, force: bool = False, write: bool = True) -> Path:
    """Create ``OUTPUT_PATH`` (if needed) and make sure it belongs to this config.

    A folder whose ``config.cfg`` differs in keys outside :data:`RESUMABLE_KEYS` (or cannot be read)
    raises :class:`RunFolderError` unless ``force``. The resolved config is (re)written afterwards, unless
    ``write`` is false (the other ranks of a distributed run only check).
    """
    folder = RunFolder.of(cfg).root
    try:
        changes = stored_config_changes(cfg) or []
    except RunFolderError:
        if not force:
            raise
        changes = []
    if changes and not force:
        raise RunFolderError(
            f"{folder} holds a run with another config ({describe_changes(changes)}); use another "
            "[Training] OUTPUT_PATH, or --force to continue this run with the new values"
        )
    if changes:
        logger.warning("--force: continuing %s with changed config: %s", folder, "; ".join(changes))
    if write:
        write_resolved_config(cfg, folder)
    return folder
