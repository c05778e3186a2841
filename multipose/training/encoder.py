"""Encoder pretraining: the Augmented Autoencoder (``train_encoder.py``, config ``[Encoder]``).

As Sundermeyer et al. (ECCV 2018, ``DLR-RM/AugmentedAutoencoder``): the encoder and its mirrored
decoder learn to reconstruct the *clean* image of a rotation (object on black, centred in its window,
lit by a headlight: the image a codebook entry encodes) from an augmented crop of the same rotation
(random light, random offset of the window) on a background, with the bootstrapped L2 loss (the mean
squared error over the worst ``1 / BOOTSTRAP_RATIO`` of each image's values) and Adam at a constant
learning rate. The
encoder learns to keep what the object's orientation changes and to drop background, lighting and
occluders, which is what the frozen pose pipeline needs.

:func:`fit_encoder` runs the iterations of a :class:`PretrainRun` (assembled from a config by
:mod:`multipose.experiment.encoder_training`) on the shared loop skeleton (:mod:`multipose.training.loop`)
and writes the encoder.

Exact resume: every ``SAVE_INTERVAL`` iterations and at the end, a checkpoint holds everything the
following iterations depend on (autoencoder incl. batch-norm statistics, Adam, iteration, global RNG
states, the data pipeline's generators) plus the architecture arguments and the resolved config.
Iterations after the newest checkpoint are simply run again from that state, so a run killed at any
moment and restarted ends with the same weights as one never interrupted (same seed, same device;
bit-exact on the CPU, and on CUDA as far as cuDNN's kernels are deterministic).

Files: the encoder at ``run.out_path`` (:func:`multipose.models.save_encoder`; the run folder's ``encoder.pt``
as :mod:`multipose.experiment.encoder_training` assembles it), and in ``run.folder``: ``encoder-epoch{N}.pt``
(checkpoints, N = iteration; the newest :data:`KEEP_CHECKPOINTS`), ``train-loss.csv`` (``iteration, loss, lr,
seconds``: the mean loss of each ``log_interval`` iterations), ``loss.png`` and ``preview-iter{N}.png`` (input |
target | reconstruction of :data:`PREVIEW_SAMPLES` fixed samples, when ``run.preview`` holds them).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from multipose.data.datasets import TrainingData
from multipose.data.io import Batch
from multipose.data.sampling import derive_seed
from multipose.infra.board import Board
from multipose.infra.checkpoint import CheckpointStore
from multipose.infra.distributed import Dist, data_parallel
from multipose.infra.errors import UserInputError
from multipose.infra.progress import progress_bar
from multipose.infra.runlock import StopRequest
from multipose.infra.visualize import image_grid, save_figure
from multipose.models import Autoencoder, EncoderConfig, bootstrapped_l2_loss, save_encoder
from multipose.training.common import (
    MetricsLog,
    plot_curves,
    rng_state,
    set_rng_state,
)
from multipose.training.loop import open_board, run_loop

logger = logging.getLogger(__name__)

__all__ = [
    "KEEP_CHECKPOINTS",
    "PretrainProgress",
    "PREVIEW_SAMPLES",
    "TRAIN_FIELDS",
    "PretrainRun",
    "PretrainSchedule",
    "fit_encoder",
    "fixed_samples",
]

#: Newest pretraining checkpoints kept (two, so that a damaged newest one has a fallback).
KEEP_CHECKPOINTS = 2
#: Fixed samples shown in every reconstruction preview.
PREVIEW_SAMPLES = 6
#: Columns of ``encoder/train-loss.csv``.
TRAIN_FIELDS = ("iteration", "loss", "lr", "seconds")
#: Iterations timed (after one warm-up iteration) before the expected duration is logged.
_TIMED_ITERATIONS = 3


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fixed_samples(data: TrainingData, n: int, seed: int) -> Batch:
    """``n`` samples for the previews, the same in every run of a seed: drawn from the training
    pipeline with its generators temporarily re-seeded, so the training streams are untouched."""
    saved = data.state_dict()
    data.generator.manual_seed(derive_seed(seed, "encoder-preview-images"))
    data.sampler.generator.manual_seed(derive_seed(seed, "encoder-preview-poses"))
    try:
        return data.batch(n)
    finally:
        data.load_state_dict(saved)


@torch.no_grad()
def _save_preview(path: Path, model: Autoencoder, samples: Batch, ratio: int) -> None:
    """One row per sample: input | target | reconstruction (eval mode: batch-norm running statistics,
    so drawing a preview changes nothing in training)."""
    assert samples.target is not None  # the pretraining data has with_target=True
    was_training = model.training
    model.eval()
    try:
        recon = model(samples.image).reconstruction
    finally:
        model.train(was_training)
    losses = [
        float(bootstrapped_l2_loss(r[None], t[None], ratio)) for r, t in zip(recon, samples.target, strict=True)
    ]
    rows = [
        [img.permute(1, 2, 0).float().cpu().numpy() for img in (samples.image[i], samples.target[i], recon[i])]
        for i in range(recon.shape[0])
    ]
    titles = [f"loss {loss:.4f}" for loss in losses]
    save_figure(image_grid(rows, ["input", "target", "reconstruction"], row_titles=titles), path)


@dataclass
class PretrainProgress:
    """The resumable state of the pretraining loop, saved in every checkpoint and restored as a unit:
    iterations done, seconds spent and the mean loss of the last logged window."""

    iteration: int = 0
    seconds: float = 0.0
    loss: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "seconds": self.seconds, "loss": self.loss}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PretrainProgress:
        return cls(state["iteration"], state["seconds"], state.get("loss"))


@dataclass(frozen=True)
class PretrainSchedule:
    """How the autoencoder trains: ``num_iter`` iterations of ``batch_size`` crops, Adam at ``learning_rate``,
    the bootstrapped L2 loss over the worst ``1 / bootstrap_ratio`` of each image; a log line every
    ``log_interval`` iterations and a checkpoint every ``save_interval``; ``config_text``: the resolved config
    each checkpoint records."""

    num_iter: int
    batch_size: int
    learning_rate: float
    bootstrap_ratio: int
    save_interval: int
    log_interval: int
    config_text: str = ""


@dataclass
class PretrainRun:
    """What every iteration of one pretraining run uses (built by
    :func:`multipose.experiment.encoder_training.pretrain_encoder`): ``folder`` holds the checkpoints, log and
    figures, ``out_path`` receives the encoder with ``metadata`` (what it was trained on)."""

    schedule: PretrainSchedule
    folder: Path
    out_path: Path
    board_dir: Path
    metadata: dict[str, Any]
    architecture: EncoderConfig
    model: Autoencoder
    optimizer: torch.optim.Optimizer
    data: TrainingData
    preview: Batch | None
    store: CheckpointStore
    log: MetricsLog
    dist: Dist
    board: Board | None = None  # set once the resumed iteration is known
    trained: torch.nn.Module = field(init=False)  # what trains: the model, wrapped in DDP when distributed

    def __post_init__(self) -> None:
        self.model, self.trained = data_parallel(self.model, next(self.model.parameters()).device, self.dist)


class _LossWindow:
    """The losses since the last log line, and the wall time since then."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.timer = time.perf_counter()
        self.reset()

    def reset(self) -> None:
        self.sum, self.count = torch.zeros((), device=self.device), 0

    def add(self, loss: torch.Tensor) -> None:
        self.sum += loss.detach()
        self.count += 1

    def close(self, state: PretrainProgress) -> float:
        """Add the seconds since the last close to ``state``; the window's mean loss, then start a new window."""
        now = time.perf_counter()
        state.seconds, self.timer = state.seconds + (now - self.timer), now
        mean = float(self.sum / self.count)
        self.reset()
        return mean


def fit_encoder(run: PretrainRun, progress: bool, stop_after: int | None = None) -> Path:
    """Pretrain ``run`` from its newest readable checkpoint to ``num_iter`` iterations and write the encoder to
    ``run.out_path`` (rank 0); that path. ``stop_after`` ends the call after that iteration, as if the process
    were killed there (only the checkpoints due by then exist, no encoder file)."""
    sch = run.schedule
    latest = run.store.load_latest()
    if latest is not None:
        state = _restore(run, *latest)
    else:
        state = PretrainProgress()
        logger.info("pretraining the encoder (%s): %d iterations of %d crops, Adam lr %g, bootstrap ratio %d, on %s",
                    run.architecture.describe(), sch.num_iter, sch.batch_size, sch.learning_rate,
                    sch.bootstrap_ratio, next(run.model.parameters()).device)
    run.log.truncate(state.iteration)
    run.board = open_board(run.board_dir, state.iteration, enabled=run.dist.is_main)
    run.model.train()
    bar = progress_bar(total=sch.num_iter, initial=min(state.iteration, sch.num_iter), desc="pretraining encoder",
                       unit="it", disable=not progress, leave=False)
    with bar:
        end = run_loop(_Iterations(run, state, bar), state.iteration, sch.num_iter, stop_after)
    run.board.close()
    if end.last < sch.num_iter:
        logger.info("encoder pretraining stopped after iteration %d (stop_after)", end.last)
        return run.out_path
    return _save_pretrained(run, state) if run.dist.is_main else run.out_path


class _Iterations:
    """Pretraining's :class:`~multipose.training.loop.Steps`: one batch, then the log line and checkpoint
    when they are due."""

    def __init__(self, run: PretrainRun, state: PretrainProgress, bar: Any) -> None:
        self.run, self.state, self.bar = run, state, bar
        self.estimate = _DurationEstimate(run.schedule.num_iter, state.iteration)
        self.window = _LossWindow(next(run.model.parameters()).device)

    def step(self, number: int, stop: StopRequest) -> None:
        stop.check(f"at encoder pretraining iteration {number}")
        self.window.add(_step(self.run))
        self.state.iteration = number
        self.bar.update(1)
        self.estimate.tick(number)

    def after(self, number: int) -> None:
        run, state, sch = self.run, self.state, self.run.schedule
        due = number % sch.save_interval == 0 or number == sch.num_iter
        if due or number % sch.log_interval == 0:
            state.loss = self.window.close(state)
            lr = run.optimizer.param_groups[0]["lr"]
            run.log.append({"iteration": number, "loss": state.loss, "lr": lr, "seconds": round(state.seconds, 2)})
            self.bar.set_postfix(loss=f"{state.loss:.4f}")
            assert run.board is not None  # opened by fit_encoder
            run.board.scalars(number, {"encoder/loss": state.loss, "encoder/lr": lr})
        if due and run.dist.is_main:
            _save_checkpoint(run, state)

    def stop_reason(self, number: int) -> str | None:
        return None


def _restore(run: PretrainRun, state: dict[str, Any], path: Path) -> PretrainProgress:
    """Load a checkpoint's autoencoder, Adam, data streams and RNG states into ``run`` (after checking that
    it holds the configured architecture)."""
    sch = run.schedule
    if state["encoder_args"] != run.architecture.to_dict():
        raise UserInputError(
            f"{path}: holds an autoencoder with {state['encoder_args']}, but [Encoder] asks for "
            f"{run.architecture.to_dict()}; delete {run.folder} to pretrain from scratch, or use another "
            "[Training] OUTPUT_PATH"
        )
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    for group in run.optimizer.param_groups:  # --force may have changed it; same value otherwise
        group["lr"] = sch.learning_rate
    run.data.load_state_dict(state["data"])
    set_rng_state(state["rng"])
    progress = PretrainProgress.from_state_dict(state)
    logger.info("resuming encoder pretraining in %s from %s (iteration %d of %d)",
                run.folder, path.name, progress.iteration, sch.num_iter)
    if progress.iteration > sch.num_iter:
        logger.warning("the checkpoint is past [Encoder] NUM_ITER = %d; keeping its weights", sch.num_iter)
    return progress


def _step(run: PretrainRun) -> torch.Tensor:
    """One iteration: a batch, the bootstrapped L2 loss of its reconstruction, an Adam step; the batch's loss.

    Distributed, each rank reconstructs its share of the same global batch; the share's mean times
    ``share * world_size / B`` makes the gradients DDP averages those of the global batch's mean."""
    sch, dist = run.schedule, run.dist
    batch = run.data.batch(sch.batch_size)
    assert batch.target is not None  # the pretraining data has with_target=True
    mine = dist.shard(len(batch))
    out = run.trained(batch.image[mine])
    loss = bootstrapped_l2_loss(out.reconstruction, batch.target[mine], sch.bootstrap_ratio)
    share = loss * (batch.image[mine].shape[0] * dist.world_size / len(batch)) if dist.enabled else loss
    run.optimizer.zero_grad(set_to_none=True)
    share.backward()
    run.optimizer.step()
    if not dist.enabled:
        return loss
    return dist.sum(share.detach()) / dist.world_size


class _DurationEstimate:
    """Logs the expected duration once :data:`_TIMED_ITERATIONS` iterations after the warm-up one (the
    first of this call) are timed."""

    def __init__(self, num_iter: int, first: int) -> None:
        self.num_iter, self.first = num_iter, first
        self.start: float | None = None

    def tick(self, iteration: int) -> None:
        if iteration == self.first + 1:
            self.start = time.perf_counter()
        elif self.start is not None and iteration == self.first + 1 + _TIMED_ITERATIONS:
            per_iteration = (time.perf_counter() - self.start) / _TIMED_ITERATIONS
            remaining = self.num_iter - iteration
            logger.info("encoder pretraining: %.2f s per iteration; about %s for the remaining %d iterations",
                        per_iteration, _duration(per_iteration * remaining), remaining)


def _save_checkpoint(run: PretrainRun, state: PretrainProgress) -> None:
    """Figures first (the checkpoint commits the chunk, so a kill before it redraws them on re-run), then
    everything the following iterations depend on."""
    sch = run.schedule
    plot_curves([("train (bootstrapped L2)", *run.log.column("loss"))], run.folder / "loss.png",
                "iteration", "reconstruction loss", log_y=True)
    if run.preview is not None:
        _save_preview(run.folder / f"preview-iter{state.iteration}.png", run.model, run.preview, sch.bootstrap_ratio)
    checkpoint: dict[str, Any] = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        **state.state_dict(),
        "encoder_args": run.architecture.to_dict(),
        "data": run.data.state_dict(),
        "rng": rng_state(),
        "config": sch.config_text,
    }
    run.store.save(checkpoint, state.iteration)
    logger.info("encoder pretraining: iteration %d/%d, loss %.4f, %s", state.iteration, sch.num_iter,
                state.loss, _duration(state.seconds))


def _save_pretrained(run: PretrainRun, state: PretrainProgress) -> Path:
    """Write the encoder with what it was trained on (:func:`multipose.models.save_encoder`); its path."""
    sch = run.schedule
    save_encoder(
        run.model.encoder,
        run.out_path,
        metadata={
            "source": "multipose encoder pretraining (train_encoder.py)",
            "iterations": int(state.iteration),
            "batch_size": int(sch.batch_size),
            "learning_rate": float(sch.learning_rate),
            "bootstrap_ratio": int(sch.bootstrap_ratio),
            "final_loss": None if state.loss is None else float(state.loss),
            "seconds": round(float(state.seconds), 2),
            **run.metadata,
            "config": sch.config_text,
        },
    )
    logger.info("encoder pretraining done: %d iterations in %s, final loss %s; wrote %s", state.iteration,
                _duration(state.seconds), "n/a" if state.loss is None else f"{state.loss:.4f}", run.out_path)
    return run.out_path
