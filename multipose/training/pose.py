"""The pose head's training loop (``train.py``; assembled from a config by
:mod:`multipose.experiment.pose_training`).

:func:`fit` runs epochs of the training data, each followed by validation, metrics, images and an atomic
checkpoint, until ``num_epochs``, early stopping or ``max_hours`` (:class:`HeadSchedule`).

Exact resume: a checkpoint is written after every epoch and holds everything the next epoch depends
on (head, optimizer, scheduler, global RNG states, the data pipeline's generators and hard-sample
pool; early stopping is replayed from the validation losses). An interrupted epoch is simply run again from
that state, so a run killed at any moment and restarted ends with the same weights as one that was never
interrupted (same seed, same device).

Files (paths given by the caller): ``models/model-epoch{N}.pt`` (the checkpoint store keeps the newest few) and
``models/model-best.pt`` (the epoch with the lowest validation ``metric``), ``train-loss.csv``,
``validation-loss.csv``, ``loss.png``, ``images/`` (with ``saved_images``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multipose.core.losses import MultiPoseLoss, population_loss
from multipose.data.datasets import TrainingData
from multipose.data.io import Batch, SampleSet
from multipose.data.objects import ObjectMix
from multipose.data.pbr import PbrMix
from multipose.infra.board import Board
from multipose.infra.checkpoint import CheckpointStore
from multipose.infra.distributed import Dist, data_parallel
from multipose.infra.errors import NumericalError, RunFolderError, UserInputError
from multipose.infra.progress import progress_bar
from multipose.infra.runlock import StopRequest
from multipose.infra.timing import PhaseTimes
from multipose.models import Encoder, HeadOutput, PoseHead, PoseHeadConfig
from multipose.models.head import head_input
from multipose.models.weights import encoder_digest, encoder_mismatch
from multipose.training.common import (
    MetricsLog,
    plot_curves,
    rng_state,
    set_rng_state,
)
from multipose.training.loop import open_board, run_loop
from multipose.training.population import PopulationTargets
from multipose.training.validation import ClassifyTerm, evaluate_loss, evaluate_objects, sample_loss, save_examples

logger = logging.getLogger(__name__)

__all__ = [
    "TRAIN_FIELDS",
    "HeadProgress",
    "HeadRun",
    "HeadSchedule",
    "NumericalError",
    "check_resumable",
    "fit",
    "TrainResult",
    "early_stopping_epoch",
    "freeze",
    "one_cycle_factor",
    "one_cycle_lr",
]

TRAIN_FIELDS = ("epoch", "loss", "depth", "diversity", "lr", "seconds")


@dataclass(frozen=True)
class TrainResult:
    """What a call of :func:`fit` ended with."""

    run_dir: Path
    last_epoch: int
    best_epoch: int
    best_validation: float  # the lowest validation ``metric``
    metric: str  # the VALIDATION_METRIC that picked model-best.pt: "loss" or "top_depth"
    stopped_early: bool


def freeze(encoder: Encoder) -> Encoder:
    """The encoder in eval mode (batch norm uses its running statistics) with no parameter that
    requires a gradient: training the head never changes it."""
    encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder


def one_cycle_lr(epoch: int, num_epochs: int, low: float, high: float) -> float:
    """The learning rate of ``epoch`` (0-based) under the original's one-cycle policy
    (``utils/onecyclelr.py``, stepped once per epoch, momentum cycling dropped: Adam has none): with
    ``C = floor(0.9 * num_epochs)`` and ``H = C // 2``, linear ``low -> high`` over epochs ``0..H``,
    ``high -> low`` over ``H..C``, then ``low -> 0.01 * low`` over ``C..num_epochs`` (reached one epoch
    after the last); constant beyond."""
    cycle = int(num_epochs * 0.9)
    half = cycle // 2
    if epoch <= half:  # (the original divided by zero for fewer than 3 epochs; here the cycle starts at LOW)
        return low + (high - low) * epoch / half if half else low
    if epoch <= cycle:
        return high - (high - low) * (epoch - half) / (cycle - half)
    final = 0.01 * low
    return low - (low - final) * min(epoch - cycle, num_epochs - cycle) / (num_epochs - cycle)


def one_cycle_factor(epoch: int, num_epochs: int, low: float, high: float) -> float:
    return one_cycle_lr(epoch, num_epochs, low, high) / low


def early_stopping_epoch(
    validation_losses: Sequence[float] | np.ndarray, window: int, patience: int
) -> int | None:
    """The epoch (1-based) after which the original's early stopping ends training, or None.

    Replays the original's rule over the validation losses so far: from the epoch after the first
    ``window`` ones on, every epoch counts one more without improvement, and training stops once that
    count exceeds ``patience`` (``STOPPING_TIME_LIMIT``); otherwise the moving average of the ``window``
    losses *before* that epoch is computed and, if it is the lowest yet, the count restarts at 0.
    """
    lowest, count = math.inf, 0
    for epoch0 in range(window, len(validation_losses)):
        count += 1
        if count > patience:
            return epoch0 + 1
        mean = float(np.mean(validation_losses[epoch0 - window : epoch0]))
        if mean < lowest:
            lowest, count = mean, 0
    return None


def _check_finite(value: torch.Tensor, what: str, epoch: int, batch: int | None, store) -> None:
    """Raise :class:`NumericalError` naming the epoch and batch when ``value`` is NaN or infinite; the
    checkpoints on disk (all written before) stay as they are."""
    if bool(torch.isfinite(value).all()):
        return
    where = f"epoch {epoch}" + (f", batch {batch}" if batch is not None else " (validation)")
    kept = f"{store.path(epoch - 1).name} is the last good checkpoint" if epoch > 1 else "no checkpoint was written"
    raise NumericalError(
        f"{where}: {what} became {float(value.detach().float().sum())} (too high a learning rate? try a lower "
        f"[Training] LEARNING_RATE or LEARNING_RATE_HIGH); training stopped, {kept}"
    )


def _train_epoch(run: HeadRun, stop: StopRequest, epoch: int) -> list[float]:
    """One pass over the data: returns the sample-weighted means of the loss, depth and diversity terms.

    Every rank draws the same global batch and trains on its share (:meth:`~multipose.infra.distributed.Dist.shard`);
    the loss of the share is its sum times ``world_size / B``, so that the gradients DDP averages over the
    ranks are those of the global batch's mean (with one process: the batch mean)."""
    dist, head = run.dist, run.model
    head.train()
    sums, seen = torch.zeros(3), 0
    bar = progress_bar(run.data, desc=f"epoch {epoch}", unit="batch", disable=not run.progress, leave=False)
    for number, batch in enumerate(bar, 1):
        stop.check(f"in epoch {epoch} before batch {number}")
        n = batch.R.shape[0]
        if n < 2:  # batch norm cannot train on one sample; it is drawn again next epoch
            continue
        mine = dist.shard(n)
        with torch.no_grad():  # the frozen encoder (a fine-tuned dense layer is the head's, after this)
            code = head_input(run.encoder, run.head, batch.image[mine])
        # a population head trains on its anchor logits alone: no peak search (40 of its 47 ms per batch of 64)
        out = head(code, hypotheses=run.targets is None)
        per_sample, depth, diversity = _batch_terms(run, out, batch, mine)
        loss = per_sample.sum() * (dist.world_size / n) if dist.enabled else per_sample.mean()
        _check_finite(loss, "the loss", epoch, number, run.store)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _check_finite(torch.stack([p.grad.abs().sum() for p in head.parameters() if p.grad is not None]).sum(),
                      "a gradient", epoch, number, run.store)
        run.optimizer.step()
        run.data.update(batch, dist.gather_rows(per_sample.detach(), n))
        local = torch.stack([per_sample.detach().sum(), depth.sum(), diversity.sum()])
        sums += dist.sum(local).cpu()
        seen += n
        bar.set_postfix(loss=f"{sums[0].item() / seen:.4f}")
    return (sums / max(seen, 1)).tolist()


def _batch_terms(run: HeadRun, out: HeadOutput, batch: Batch, mine: slice
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This rank's rows of a training batch: the per-sample loss to minimise ``(n,)`` and, for the log, the
    depth and diversity terms ``(n,)`` (no gradient). A regression head's loss is the multi-pose loss; a
    population head's the soft-target cross-entropy (:func:`~multipose.core.losses.population_loss`), with NaN
    depth and diversity terms (not computed: its validation reports them)."""
    if out.anchor_logits is None:  # (a head of several objects: each sample's block, and the classifier's term)
        objects = batch.objects[mine] if batch.objects is not None else None
        loss, terms, _ = sample_loss(out, batch.R[mine], run.loss_fn, objects, run.schedule.classify)
        return loss, terms.depth.detach().mean(dim=1), terms.diversity.detach()
    assert run.targets is not None  # built for every population head
    index, prob = run.targets.for_batch(batch, mine)
    per_sample = population_loss(out.anchor_logits, index, prob)
    nan = torch.full_like(per_sample, math.nan).detach()
    return per_sample, nan, nan


@dataclass
class HeadProgress:
    """The resumable state of the epoch loop, saved in every checkpoint and restored as a unit. (The
    epochs without improvement that early stopping counts are not stored: :func:`early_stopping_epoch`
    replays them from the validation losses, which the log keeps up to the checkpoint's epoch.)"""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    seconds: float = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "best_validation_loss": self.best_loss, "best_epoch": self.best_epoch,
                "seconds": self.seconds}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> HeadProgress:
        return cls(state["epoch"], state["best_validation_loss"], state["best_epoch"], state["seconds"])

    def record(self, validation_loss: float) -> bool:
        """Note this epoch's validation figure (``VALIDATION_METRIC``); True when it is the best yet."""
        improved = validation_loss < self.best_loss
        if improved:
            self.best_loss, self.best_epoch = validation_loss, self.epoch
        return improved


@dataclass(frozen=True)
class HeadSchedule:
    """How long the head trains and what each epoch writes.

    ``num_epochs``: epochs of ``NUM_SAMPLES`` samples; ``batch_size``: validation batches; ``metric``: the
    validation column that picks ``model-best.pt`` (``"loss"`` or ``"top_depth"``); early stopping over a moving
    average of ``stopping_window`` epochs with ``stopping_patience`` (when ``early_stopping``); ``max_hours`` of
    training (None: no limit); ``saved_images``: validation samples drawn per epoch (0: none); ``config_text``:
    the resolved config each checkpoint records; ``classify``: the classification term of a head of several
    objects with a classifier (None: none)."""

    num_epochs: int
    batch_size: int
    metric: str
    early_stopping: bool = False
    stopping_window: int = 1
    stopping_patience: int = 1
    max_hours: float | None = None
    saved_images: int = 0
    config_text: str = ""
    classify: ClassifyTerm | None = None


@dataclass
class HeadRun:
    """What every epoch of one run uses (built once by :func:`multipose.experiment.pose_training.train_pose_head`):
    the models, loss, data, optimizer and schedule, and where the run's files go (``images``, ``loss_plot``,
    ``board_dir``; the logs and checkpoint store know their own paths)."""

    schedule: HeadSchedule
    device: torch.device
    run_dir: Path
    encoder: Encoder
    head: PoseHead
    loss_fn: MultiPoseLoss
    data: TrainingData | ObjectMix | PbrMix
    validation: SampleSet | list[SampleSet]  # a head of several objects: one set per object
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    store: CheckpointStore
    train_log: MetricsLog
    valid_log: MetricsLog
    images: Path
    loss_plot: Path
    board_dir: Path
    times: PhaseTimes
    progress: bool
    dist: Dist
    targets: PopulationTargets | None  # a population head's soft targets; None for a regression head
    board: Board = field(init=False)  # set once the resumed epoch is known
    model: torch.nn.Module = field(init=False)  # what trains: the head, wrapped in DDP when distributed
    encoder_sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.encoder_sha256 = encoder_digest(self.encoder)
        self.head, self.model = data_parallel(self.head, self.device, self.dist)

    @property
    def metric(self) -> str:
        """The validation column that picks ``model-best.pt``."""
        return self.schedule.metric


def fit(run: HeadRun, latest: tuple[dict[str, Any], Path] | None, stop_after_epoch: int | None = None) -> TrainResult:
    """Train ``run`` from the checkpoint ``latest`` (``(state, path)``, or None for a new run) until
    ``num_epochs``, early stopping or ``max_hours``; ``stop_after_epoch`` ends the call after that epoch's
    checkpoint (to test resuming)."""
    state = _restore(run, *latest) if latest is not None else HeadProgress()
    run.train_log.truncate(state.epoch)
    run.valid_log.truncate(state.epoch)
    run.board = open_board(run.board_dir, state.epoch, enabled=run.dist.is_main)
    end = run_loop(_Epochs(run, state), state.epoch, run.schedule.num_epochs, stop_after_epoch)
    run.board.close()
    if end.reason is not None:
        logger.info("%s", end.reason)
    return TrainResult(run.run_dir, state.epoch, state.best_epoch, state.best_loss, run.metric,
                       stopped_early=end.reason is not None)


class _Epochs:
    """The head's :class:`~multipose.training.loop.Steps`: an epoch (training, validation, logs, images), then
    its checkpoint (rank 0)."""

    def __init__(self, run: HeadRun, state: HeadProgress) -> None:
        self.run, self.state, self.improved = run, state, False

    def step(self, number: int, stop: StopRequest) -> None:
        self.state.epoch = number
        self.improved = _run_epoch(self.run, self.state, stop)

    def after(self, number: int) -> None:
        if self.run.dist.is_main:
            with self.run.times.phase("checkpoints"):
                self.run.store.save(_checkpoint(self.run, self.state), number, is_best=self.improved)
            _plot_losses(self.run)

    def stop_reason(self, number: int) -> str | None:
        return _stop_reason(self.run, self.state)


def check_resumable(
    state: dict[str, Any], path: Path, head: PoseHead, encoder: Encoder, encoder_path: Path, force: bool
) -> None:
    """Raise when the checkpoint ``state`` (from ``path``) holds another head, or was trained on another
    encoder than ``encoder`` (read from ``encoder_path``; allowed with ``force``, with a warning)."""
    stored = {**PoseHeadConfig(num_hypotheses=1).to_dict(), **state["head_args"]}  # older files lack later arguments
    if stored != head.config.to_dict():
        raise UserInputError(
            f"{path}: holds a head with {state['head_args']}, but the config asks for {head.config.to_dict()}; "
            "use another [Training] OUTPUT_PATH"
        )
    mismatch = encoder_mismatch(state, encoder_digest(encoder), path, encoder_path)
    if mismatch and not force:
        raise RunFolderError(
            f"{mismatch}; restore that encoder, use another [Training] OUTPUT_PATH, or --force to continue "
            "training this head on the new encoder"
        )
    if mismatch:
        logger.warning("--force: %s; continuing on the new encoder", mismatch)


def _restore(run: HeadRun, state: dict[str, Any], path: Path) -> HeadProgress:
    """Load a checkpoint's head, optimizer, scheduler, data streams and RNG states into ``run``."""
    run.head.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.data.load_state_dict(state["data"])
    set_rng_state(state["rng"])
    progress = HeadProgress.from_state_dict(state)
    before = state.get("validation_metric", "loss")  # older versions picked every head by the loss
    if before != run.metric:
        epochs, values = run.valid_log.column(run.metric)
        values = values[epochs <= progress.epoch]
        progress.best_loss, progress.best_epoch = ((float(values.min()), int(epochs[values.argmin()]))
                                                   if len(values) else (math.inf, 0))
        logger.warning("%s: model-best.pt was picked by the validation %s so far; from now on by %s",
                       run.run_dir, before, run.metric)
    logger.info("resuming %s from %s (epoch %d, best validation %s %.4f)", run.run_dir, path.name,
                progress.epoch, run.metric, progress.best_loss)
    return progress


def _run_epoch(run: HeadRun, state: HeadProgress, stop: StopRequest) -> bool:
    """Train and validate epoch ``state.epoch``, log it and draw its images; True when its validation
    loss is the best yet."""
    sch = run.schedule
    start = time.perf_counter()
    with run.times.phase("head_training"):
        means = _train_epoch(run, stop, state.epoch)
        lr = run.optimizer.param_groups[0]["lr"]
        run.scheduler.step()
    with run.times.phase("validation"):
        if isinstance(run.validation, list):  # a head of several objects: one set per object
            validation = evaluate_objects(run.encoder, run.head, run.loss_fn, run.validation, sch.batch_size,
                                          run.device, run.dist, sch.classify)
        else:
            validation = evaluate_loss(run.encoder, run.head, run.loss_fn, run.validation, sch.batch_size,
                                       run.device, run.dist)
    metrics = validation.metrics
    _check_finite(torch.tensor(metrics["loss"]), "the validation loss", state.epoch, None, run.store)
    state.seconds += time.perf_counter() - start
    run.train_log.append(dict(zip(TRAIN_FIELDS, [state.epoch, *means, lr, round(state.seconds, 2)], strict=True)))
    run.valid_log.append({"epoch": state.epoch, **metrics})
    run.board.scalars(state.epoch, {"train/loss": means[0], "train/depth": means[1], "train/diversity": means[2],
                                    "train/lr": lr, **{f"validation/{k}": v for k, v in metrics.items()}})
    improved = state.record(metrics[run.metric])
    if sch.saved_images and run.dist.is_main:
        with run.times.phase("figures"):
            n_img = min(sch.saved_images, len(validation.per_sample))
            images = run.images
            samples, obj = (run.validation[0], 0) if isinstance(run.validation, list) else (run.validation, None)
            for name, rows in (("samples", torch.arange(n_img)),
                               ("hardest", validation.per_sample.argsort(descending=True)[:n_img])):
                save_examples(images / f"epoch{state.epoch}-{name}.png", run.encoder, run.head, run.loss_fn, samples,
                              rows, run.device, obj)
            for kind in ("samples", "hardest"):
                run.board.image_file(f"validation/{kind}", state.epoch, images / f"epoch{state.epoch}-{kind}.png")
    logger.info("epoch %d/%d: train %.4f, validation %.4f (top depth %.4f, best-of-K depth %.4f), lr %.2e, %.1f s",
                state.epoch, sch.num_epochs, means[0], metrics["loss"], metrics["top_depth"],
                metrics["best_of_k_depth"], lr, state.seconds)
    return improved


def _checkpoint(run: HeadRun, state: HeadProgress) -> dict[str, Any]:
    """Everything the next epoch depends on, and what the checkpoint was trained with."""
    return {
        "model": run.head.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        **state.state_dict(),
        "validation_metric": run.metric,
        "head_args": run.head.config.to_dict(),
        "encoder_args": run.encoder.config.to_dict(),
        "encoder_sha256": run.encoder_sha256,
        "data": run.data.state_dict(),
        "rng": rng_state(),
        "config": run.schedule.config_text,
    }


def _plot_losses(run: HeadRun) -> None:
    """``loss.png``: training and validation losses and the validation best-of-K depth term per epoch."""
    plot_curves(
        [("train", *run.train_log.column("loss")), ("validation", *run.valid_log.column("loss")),
         ("validation top depth", *run.valid_log.column("top_depth")),
         ("validation best-of-K depth", *run.valid_log.column("best_of_k_depth"))],
        run.loss_plot, "epoch", "multi-pose loss",
    )


def _stop_reason(run: HeadRun, state: HeadProgress) -> str | None:
    """Why training ends before ``NUM_ITER`` after this epoch (early stopping, ``MAX_HOURS``), or None."""
    sch = run.schedule
    if sch.early_stopping and early_stopping_epoch(run.valid_log.column(run.metric)[1], sch.stopping_window,
                                                   sch.stopping_patience) == state.epoch:
        return (f"early stopping: the {sch.stopping_window}-epoch moving average of the validation {run.metric} has "
                f"not improved for more than {sch.stopping_patience} epochs")
    if sch.max_hours is not None and state.seconds >= sch.max_hours * 3600.0:
        return f"stopping: MAX_HOURS = {sch.max_hours:g} h of training reached"
    return None
