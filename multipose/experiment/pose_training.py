"""Training the pose head of an experiment config (``train.py``): everything the config says, read once and
assembled, then the loop of :mod:`multipose.training.pose`.

One run, top to bottom: read every input that can be wrong (the loss and its meshes, an ``INIT_CHECKPOINT``, an
explicit encoder) -> guard the run folder (``OUTPUT_PATH``) -> seed -> frozen encoder (pretrained first if
``ENCODER_WEIGHTS: auto`` and missing) -> pose head -> the newest readable checkpoint, checked -> data ->
optimizer and LR schedule -> :func:`multipose.training.pose.fit` (which restores the checkpoint and runs the
epochs).
"""

from __future__ import annotations

from functools import partial

import torch

from multipose.config import Config, num_objects
from multipose.config.derived import check_crop_size, num_hypotheses, validation_metric
from multipose.data.datasets import TrainingData
from multipose.data.io import SampleSet
from multipose.data.objects import ObjectMix
from multipose.data.pbr import PbrMix
from multipose.experiment.datasets import (
    object_mix_from_config,
    object_validation_from_config,
    training_data_from_config,
    validation_data_from_config,
)
from multipose.experiment.encoder_training import ensure_encoder
from multipose.experiment.encoders import load_encoder, with_encoder_crop_size
from multipose.experiment.factories import loss_from_config
from multipose.experiment.pbr import pbr_mix_from_config
from multipose.experiment.run_folder import RunFolder, encoder_weights_path, pose_checkpoints, prepare_run_folder
from multipose.infra.distributed import Dist
from multipose.infra.errors import UserInputError
from multipose.infra.timing import PhaseTimes
from multipose.models.encoder import Encoder
from multipose.models.head import PoseHead, PoseHeadConfig, head_encoder_mismatch, init_head_weights
from multipose.models.head_checkpoint import load_head_checkpoint
from multipose.training.common import MetricsLog, seed_everything
from multipose.training.population import AnchorSettings, PopulationTargets
from multipose.training.pose import (
    TRAIN_FIELDS,
    HeadRun,
    HeadSchedule,
    TrainResult,
    check_resumable,
    fit,
    freeze,
    one_cycle_factor,
)
from multipose.training.validation import VALID_FIELDS, ClassifyTerm


def load_init_head(cfg: Config, trust: bool = False) -> PoseHead | None:
    """The head of ``[Training] INIT_CHECKPOINT`` (ours or the original's), checked against the
    config's K and ``POSE_REPRESENTATION``; None when the key is empty. ``trust``: load a file that
    needs an unsafe load (``--trust-checkpoint``)."""
    path = cfg.Training.INIT_CHECKPOINT
    if path is None:
        return None
    head, _ = load_head_checkpoint(path, num_hypotheses(cfg), trust)
    wanted = (num_hypotheses(cfg), cfg.Training.POSE_REPRESENTATION, cfg.Training.HEAD)
    if (head.config.num_hypotheses, head.config.representation, head.config.output) != wanted:
        raise UserInputError(
            f"[Training] INIT_CHECKPOINT = {path}: holds a {head.config.output} head with K = "
            f"{head.config.num_hypotheses} and {head.config.representation}, but the config asks for a {wanted[2]} "
            f"head with K = {wanted[0]} and {wanted[1]}"
        )
    if bool(head.config.encoder_features) != cfg.Training.FINETUNE_ENCODER:
        has = "has" if head.config.encoder_features else "has no"
        raise UserInputError(f"[Training] INIT_CHECKPOINT = {path}: the head {has} a fine-tuned encoder layer, but "
                             f"[Training] FINETUNE_ENCODER is {str(cfg.Training.FINETUNE_ENCODER).lower()}")
    return head


def build_head(cfg: Config, encoder: Encoder, init: PoseHead | None = None) -> PoseHead:
    """The pose head for ``K = num_hypotheses(cfg)`` and ``POSE_REPRESENTATION`` on the encoder's code:
    a copy of ``init`` (:func:`load_init_head`, keeping its 6D convention) or a fresh head whose linear
    weights are initialised by ``[Training] WEIGHT_INIT_NAME`` (with the global torch RNG). With
    ``FINETUNE_ENCODER`` a fresh head's encoder layer starts as a copy of the encoder's dense layer."""
    if init is not None:
        unfit = head_encoder_mismatch(init.config, encoder.config)
        if unfit:
            raise UserInputError(f"[Training] INIT_CHECKPOINT = {cfg.Training.INIT_CHECKPOINT}: {unfit}")
        head = PoseHead(init.config)
        head.load_state_dict(init.state_dict())
        return head.train()
    tr = cfg.Training
    population = tr.HEAD == "population"
    if tr.MODEL_RANDOM_SEED is not None:  # the original's final version: the head's initial weights alone
        torch.manual_seed(tr.MODEL_RANDOM_SEED)
    head = PoseHead(
        PoseHeadConfig(
            num_hypotheses=num_hypotheses(cfg),
            representation=tr.POSE_REPRESENTATION,
            input_dim=encoder.config.latent_size,
            width=tr.HEAD_WIDTH or (512 if population else 128),
            output=tr.HEAD,
            **({"anchor_views": tr.ANCHOR_VIEWS, "anchor_inplane": tr.ANCHOR_INPLANE, "decoding": tr.ANCHOR_DECODING}
               if population else {}),
            encoder_features=encoder.config.flat_features if tr.FINETUNE_ENCODER else 0,
            num_objects=num_objects(cfg),
            classify=tr.CLASSIFY_OBJECTS,
        )
    )
    head = init_head_weights(head, tr.WEIGHT_INIT_NAME or "")
    if head.encoder is not None:  # as the original: initialised like the others, then overwritten by the copy
        head.encoder.load_state_dict(encoder.dense.state_dict())
    return head


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule, stepped once after every epoch (the optimizer's lr starts at
    ``LEARNING_RATE_LOW`` or ``LEARNING_RATE``): the original's one-cycle policy
    (:func:`~multipose.training.pose.one_cycle_lr`
    as a ``LambdaLR``) when ``LEARNING_RATE_LOW``/``HIGH`` are set and differ (equal: a constant rate, as the
    original's final version), a ``StepLR`` (times ``LR_STEP_GAMMA`` every ``LR_STEP_EPOCHS``) when that is set,
    else a constant rate, as the original."""
    tr = cfg.Training
    if tr.LEARNING_RATE_LOW is not None and tr.LEARNING_RATE_LOW != tr.LEARNING_RATE_HIGH:
        factor = partial(
            one_cycle_factor, num_epochs=tr.NUM_ITER, low=tr.LEARNING_RATE_LOW, high=tr.LEARNING_RATE_HIGH
        )
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if tr.LR_STEP_EPOCHS is not None:
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=tr.LR_STEP_EPOCHS, gamma=tr.LR_STEP_GAMMA)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def train_pose_head(
    cfg: Config,
    device: torch.device,
    force: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
    trust_checkpoints: bool = False,
    times: PhaseTimes | None = None,
    dist: Dist | None = None,
) -> TrainResult:
    """Train (or resume training) the pose head of ``cfg`` on ``device``; see the module docstring and
    :mod:`multipose.training.pose`.

    ``stop_after_epoch`` ends the call after that epoch's checkpoint (to test resuming);
    ``trust_checkpoints`` loads checkpoints that need an unsafe load (``--trust-checkpoint``);
    ``times`` receives the seconds of each phase (``encoder_pretraining``, ``caches``,
    ``head_training``, ``validation``, ``figures``, ``checkpoints``); ``dist``: this rank of a distributed
    run (:mod:`multipose.infra.distributed`: each rank trains on its share of every batch, only rank 0 writes).
    """
    times = times or PhaseTimes()
    dist = dist or Dist()
    cfg = with_encoder_crop_size(cfg)  # an empty CROP_SIZE follows the encoder file, as in the entry scripts
    # read every input that can be wrong before the run folder is touched
    loss_fn = loss_from_config(cfg, device)
    init = load_init_head(cfg, trust_checkpoints)
    explicit = None if cfg.Dataset.ENCODER_WEIGHTS == "auto" else load_encoder(cfg)
    run_dir = prepare_run_folder(cfg, force, write=dist.is_main)
    dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    seed_everything(cfg.Training.RANDOM_SEED)
    encoder = _frozen_encoder(cfg, explicit, device, times, dist)
    head = build_head(cfg, encoder, init).to(device)
    store = pose_checkpoints(cfg)
    latest = store.load_latest(trust=trust_checkpoints)
    if latest is not None:  # check that the run can go on before any data is built
        check_resumable(*latest, head, encoder, encoder_weights_path(cfg), force)
    with times.phase("caches"):
        data, validation = _data(cfg, device, progress, dist)
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.Training.LEARNING_RATE_LOW or cfg.Training.LEARNING_RATE)
    folder = RunFolder(run_dir)
    train_log = MetricsLog(folder.train_loss, TRAIN_FIELDS, write=dist.is_main)
    per_object = [f"loss_obj{n}" for n in range(num_objects(cfg))] if num_objects(cfg) > 1 else []
    valid_log = MetricsLog(folder.validation_loss, [*VALID_FIELDS, *per_object], write=dist.is_main)
    with times.phase("caches"):
        targets = PopulationTargets.build(head, loss_fn, data, anchor_settings(cfg), progress and dist.is_main, dist)
    run = HeadRun(
        schedule=head_schedule(cfg), device=device, run_dir=run_dir, encoder=encoder, head=head, loss_fn=loss_fn,
        data=data, validation=validation, optimizer=optimizer, scheduler=build_scheduler(cfg, optimizer),
        store=store, train_log=train_log, valid_log=valid_log, images=folder.images, loss_plot=folder.loss_plot,
        board_dir=folder.board / "head", times=times, progress=progress and dist.is_main, dist=dist, targets=targets,
    )
    return fit(run, latest, stop_after_epoch)


def head_schedule(cfg: Config) -> HeadSchedule:
    """The :class:`~multipose.training.pose.HeadSchedule` of ``[Training]``."""
    tr = cfg.Training
    return HeadSchedule(
        num_epochs=tr.NUM_ITER, batch_size=tr.BATCH_SIZE, metric=validation_metric(cfg),
        early_stopping=tr.EARLY_STOPPING, stopping_window=tr.STOPPING_WINDOW, stopping_patience=tr.STOPPING_TIME_LIMIT,
        max_hours=tr.MAX_HOURS, saved_images=tr.NUM_SAVED_IMAGES if tr.SAVE_IMAGES else 0, config_text=cfg.to_ini(),
        classify=ClassifyTerm(cfg.Loss_parameters.CLASSIFY_WEIGHT, tr.CLASSIFICATION_LOSS) if tr.CLASSIFY_OBJECTS
        else None,
    )


def anchor_settings(cfg: Config) -> AnchorSettings:
    """The :class:`~multipose.training.population.AnchorSettings` of ``[Training] ANCHOR_TEMPERATURE`` and
    ``ANCHOR_CANDIDATES``."""
    return AnchorSettings(cfg.Training.ANCHOR_TEMPERATURE, cfg.Training.ANCHOR_CANDIDATES)


def _data(cfg: Config, device: torch.device, progress: bool, dist: Dist
          ) -> tuple[TrainingData | ObjectMix | PbrMix, SampleSet | list[SampleSet]]:
    """The training data and the validation set (several objects: mixed data, one set per object; with
    ``PBR_PATH`` PBR crops mixed in); in a distributed run the ranks render the view cache together (rank 0 writes
    it), and so ``validation.npz``."""
    show = progress and dist.is_main
    several = num_objects(cfg) > 1
    synthetic: TrainingData | ObjectMix | None = None
    if not cfg.Dataset.PBR_PATH or cfg.Dataset.PBR_MIX < 1.0:  # PBR crops alone need no renders
        synthetic = (object_mix_from_config(cfg, device, progress=show, dist=dist) if several
                     else training_data_from_config(cfg, device, progress=show, dist=dist))
    data = pbr_mix_from_config(cfg, synthetic, device, progress=show) if cfg.Dataset.PBR_PATH else synthetic
    assert data is not None  # synthetic renders, PBR crops, or both
    validation = (object_validation_from_config(cfg, device, progress=show, dist=dist) if several
                  else validation_data_from_config(cfg, device, progress=show, dist=dist))
    return data, validation


def _frozen_encoder(
    cfg: Config, explicit: Encoder | None, device: torch.device, times: PhaseTimes, dist: Dist
) -> Encoder:
    """The frozen encoder on ``device``: ``explicit``, or for ``ENCODER_WEIGHTS: auto``
    ``<OUTPUT_PATH>/encoder.pt``, pretrained first if missing (by every rank of a distributed run);
    checked against the crop size."""
    if explicit is None:
        with times.phase("encoder_pretraining"):
            explicit = ensure_encoder(cfg, device, progress=dist.is_main, dist=dist)
    encoder = freeze(explicit.to(device))
    check_crop_size(cfg, encoder.config.image_size, f"the encoder {encoder_weights_path(cfg)}")
    return encoder
