"""Encoder pretraining: the Augmented Autoencoder (``train_encoder.py``, config ``[Encoder]``).

As Sundermeyer et al. (ECCV 2018, ``DLR-RM/AugmentedAutoencoder``): the encoder and its mirrored
decoder learn to reconstruct the *clean* image of a rotation (object on black, centred in its window,
lit by a headlight: the image a codebook entry encodes) from an augmented crop of the same rotation
(random light, random offset of the window) on a background, with the bootstrapped L2 loss (the mean
squared error over the worst ``1 / BOOTSTRAP_RATIO`` of each image's values) and Adam at a constant
learning rate. The
encoder learns to keep what the object's orientation changes and to drop background, lighting and
occluders, which is what the frozen pose pipeline needs.

One run, top to bottom: check the architecture against the crop size -> guard the run folder
(``OUTPUT_PATH``) -> seed -> autoencoder, Adam, training data with clean targets, fixed preview
samples -> resume from the newest readable checkpoint -> ``NUM_ITER`` iterations of ``BATCH_SIZE``
crops -> the encoder as ``<OUTPUT_PATH>/encoder.pt`` (what ``ENCODER_WEIGHTS: auto`` loads).

Exact resume: every ``SAVE_INTERVAL`` iterations and at the end, a checkpoint holds everything the
following iterations depend on (autoencoder incl. batch-norm statistics, Adam, iteration, global RNG
states, the data pipeline's generators) plus the architecture arguments and the resolved config.
Iterations after the newest checkpoint are simply run again from that state, so a run killed at any
moment and restarted ends with the same weights as one never interrupted (same seed, same device;
bit-exact on the CPU, and on CUDA as far as cuDNN's kernels are deterministic).

Files in ``OUTPUT_PATH``: ``encoder.pt`` (the pretrained encoder, :func:`multipose.models.save_encoder`),
``config.cfg``, and in ``encoder/``: ``encoder-epoch{N}.pt`` (checkpoints, N = iteration; the newest
:data:`KEEP_CHECKPOINTS`), ``train-loss.csv`` (``iteration, loss, lr, seconds``: the mean loss of each
``LOG_INTERVAL`` iterations), ``loss.png`` and ``preview-iter{N}.png`` (input | target |
reconstruction of :data:`PREVIEW_SAMPLES` fixed samples; with ``[Training] SAVE_IMAGES``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from multipose.board import Board
from multipose.checkpoint import CheckpointStore
from multipose.config import Config, check_crop_size
from multipose.data.datasets import TrainingData, training_data_from_config
from multipose.data.io import Batch
from multipose.data.sampling import derive_seed
from multipose.distributed import Dist, data_parallel
from multipose.errors import UserInputError
from multipose.mesh import file_sha256
from multipose.models import Autoencoder, Encoder, EncoderConfig, bootstrapped_l2_loss, load_encoder, save_encoder
from multipose.models.weights import requested_encoder_config
from multipose.progress import progress_bar
from multipose.runlock import StopRequest
from multipose.runs import RunFolder, encoder_weights_path, prepare_run_folder
from multipose.training.common import (
    MetricsLog,
    plot_curves,
    rng_state,
    seed_everything,
    set_rng_state,
)
from multipose.visualize import image_grid, save_figure

logger = logging.getLogger(__name__)

__all__ = [
    "KEEP_CHECKPOINTS",
    "PretrainProgress",
    "PREVIEW_SAMPLES",
    "TRAIN_FIELDS",
    "encoder_output_path",
    "ensure_encoder",
    "pretrain_encoder",
]

#: Newest pretraining checkpoints kept (two, so that a damaged newest one has a fallback).
KEEP_CHECKPOINTS = 2
#: Fixed samples shown in every reconstruction preview.
PREVIEW_SAMPLES = 6
#: Columns of ``encoder/train-loss.csv``.
TRAIN_FIELDS = ("iteration", "loss", "lr", "seconds")
#: Iterations timed (after one warm-up iteration) before the expected duration is logged.
_TIMED_ITERATIONS = 3


def encoder_output_path(cfg: Config) -> Path:
    """Where pretraining writes the encoder: ``ENCODER_WEIGHTS`` when it is ``auto`` (that is
    ``<OUTPUT_PATH>/encoder.pt``), else ``<OUTPUT_PATH>/encoder.pt`` too -- an explicitly named weights
    file is never overwritten."""
    if cfg.Dataset.ENCODER_WEIGHTS == "auto":
        return encoder_weights_path(cfg)
    return RunFolder.of(cfg).encoder


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _fixed_samples(data: TrainingData, n: int, seed: int) -> Batch:
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


def pretrain_encoder(
    cfg: Config,
    device: torch.device | str,
    force: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    dist: Dist | None = None,
) -> Path:
    """Pretrain (or resume pretraining) the encoder of ``cfg`` on ``device``; see the module docstring.

    ``dist``: this rank of a distributed run (:mod:`multipose.distributed`): every rank draws the same
    global batch and trains on its share, batch norm sees the global batch, only rank 0 writes.

    Writes the encoder to :func:`encoder_output_path` and returns that path. Raises
    :class:`~multipose.errors.ConfigError` when the crop size is not the encoder's input size and
    :class:`~multipose.runs.RunFolderError` when ``OUTPUT_PATH`` holds a run of another
    config (unless ``force``). The global RNG states are restored on return, so a caller that seeded
    them (the pose-head loop) draws the same numbers afterwards whether or not pretraining ran.

    ``stop_after`` ends the call after that iteration, as if the process were killed there (only the
    checkpoints due by then exist; the encoder file is written only when ``NUM_ITER`` is reached) --
    for testing resumption.
    """
    device = torch.device(device)
    architecture = requested_encoder_config(cfg)
    check_crop_size(cfg, architecture.image_size, f"the encoder to pretrain ({architecture.describe()})")
    dist = dist or Dist()
    run_dir = prepare_run_folder(cfg, force, write=dist.is_main)
    dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    saved_rng = rng_state()
    try:
        path = _pretrain(cfg, device, run_dir, progress and dist.is_main, stop_after, dist)
    finally:
        set_rng_state(saved_rng)
    dist.barrier()  # the encoder file is written
    return path


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


@dataclass
class _PretrainRun:
    """What every iteration of one pretraining run uses."""

    cfg: Config
    folder: Path
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


def _pretrain(
    cfg: Config, device: torch.device, run_dir: Path, progress: bool, stop_after: int | None, dist: Dist
) -> Path:
    enc = cfg.Encoder
    run = _build_run(cfg, device, RunFolder(run_dir).encoder_dir, progress, dist)
    latest = run.store.load_latest()
    if latest is not None:
        state = _restore(run, *latest)
    else:
        state = PretrainProgress()
        logger.info("pretraining the encoder (%s): %d iterations of %d crops, Adam lr %g, bootstrap ratio %d, on %s",
                    run.architecture.describe(), enc.NUM_ITER, enc.BATCH_SIZE, enc.LEARNING_RATE,
                    enc.BOOTSTRAP_RATIO, device)
    run.log.truncate(state.iteration)
    run.board = Board(RunFolder(run_dir).board / "encoder", enabled=dist.is_main,
                      purge_step=state.iteration + 1 if state.iteration else None)
    estimate = _DurationEstimate(enc.NUM_ITER, state.iteration)
    window = _LossWindow(device)
    run.model.train()
    bar = progress_bar(total=enc.NUM_ITER, initial=min(state.iteration, enc.NUM_ITER), desc="pretraining encoder",
                       unit="it", disable=not progress, leave=False)
    with bar, StopRequest() as stop:
        while state.iteration < enc.NUM_ITER:
            stop.check(f"at encoder pretraining iteration {state.iteration + 1}")
            window.add(_step(run))
            state.iteration += 1
            bar.update(1)
            estimate.tick(state.iteration)
            due = state.iteration % enc.SAVE_INTERVAL == 0 or state.iteration == enc.NUM_ITER
            if due or state.iteration % enc.LOG_INTERVAL == 0:
                state.loss = window.close(state)
                run.log.append({"iteration": state.iteration, "loss": state.loss,
                                "lr": run.optimizer.param_groups[0]["lr"], "seconds": round(state.seconds, 2)})
                bar.set_postfix(loss=f"{state.loss:.4f}")
                run.board.scalars(state.iteration, {"encoder/loss": state.loss,
                                                    "encoder/lr": run.optimizer.param_groups[0]["lr"]})
            if due and dist.is_main:
                _save_checkpoint(run, state)
            if stop_after is not None and stop_after <= state.iteration < enc.NUM_ITER:
                logger.info("encoder pretraining stopped after iteration %d (stop_after)", state.iteration)
                run.board.close()
                return encoder_output_path(cfg)
    run.board.close()
    return _save_pretrained(run, state) if dist.is_main else encoder_output_path(cfg)


def _build_run(cfg: Config, device: torch.device, folder: Path, progress: bool, dist: Dist) -> _PretrainRun:
    """Seeded initial weights, Adam, the training data with clean targets (in a distributed run the ranks
    render the view cache together), the fixed preview samples."""
    seed_everything(cfg.Training.RANDOM_SEED)  # the initial weights
    architecture = requested_encoder_config(cfg)
    model = Autoencoder.from_config(architecture).to(device)
    data = training_data_from_config(cfg, device, progress=progress, with_target=True, dist=dist)
    preview = _fixed_samples(data, PREVIEW_SAMPLES, cfg.Training.RANDOM_SEED) if cfg.Training.SAVE_IMAGES else None
    return _PretrainRun(
        cfg, folder, architecture, model, torch.optim.Adam(model.parameters(), lr=cfg.Encoder.LEARNING_RATE), data,
        preview, CheckpointStore(folder, prefix="encoder", keep=KEEP_CHECKPOINTS),
        MetricsLog(folder / "train-loss.csv", TRAIN_FIELDS, step_field="iteration", write=dist.is_main), dist,
    )


def _restore(run: _PretrainRun, state: dict[str, Any], path: Path) -> PretrainProgress:
    """Load a checkpoint's autoencoder, Adam, data streams and RNG states into ``run`` (after checking that
    it holds the configured architecture)."""
    enc = run.cfg.Encoder
    if state["encoder_args"] != run.architecture.to_dict():
        raise UserInputError(
            f"{path}: holds an autoencoder with {state['encoder_args']}, but [Encoder] asks for "
            f"{run.architecture.to_dict()}; delete {run.folder} to pretrain from scratch, or use another "
            "[Training] OUTPUT_PATH"
        )
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    for group in run.optimizer.param_groups:  # --force may have changed it; same value otherwise
        group["lr"] = enc.LEARNING_RATE
    run.data.load_state_dict(state["data"])
    set_rng_state(state["rng"])
    progress = PretrainProgress.from_state_dict(state)
    logger.info("resuming encoder pretraining in %s from %s (iteration %d of %d)",
                run.folder, path.name, progress.iteration, enc.NUM_ITER)
    if progress.iteration > enc.NUM_ITER:
        logger.warning("the checkpoint is past [Encoder] NUM_ITER = %d; keeping its weights", enc.NUM_ITER)
    return progress


def _step(run: _PretrainRun) -> torch.Tensor:
    """One iteration: a batch, the bootstrapped L2 loss of its reconstruction, an Adam step; the batch's loss.

    Distributed, each rank reconstructs its share of the same global batch; the share's mean times
    ``share * world_size / B`` makes the gradients DDP averages those of the global batch's mean."""
    enc, dist = run.cfg.Encoder, run.dist
    batch = run.data.batch(enc.BATCH_SIZE)
    assert batch.target is not None  # the pretraining data has with_target=True
    mine = dist.shard(len(batch))
    out = run.trained(batch.image[mine])
    loss = bootstrapped_l2_loss(out.reconstruction, batch.target[mine], enc.BOOTSTRAP_RATIO)
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


def _save_checkpoint(run: _PretrainRun, state: PretrainProgress) -> None:
    """Figures first (the checkpoint commits the chunk, so a kill before it redraws them on re-run), then
    everything the following iterations depend on."""
    enc = run.cfg.Encoder
    plot_curves([("train (bootstrapped L2)", *run.log.column("loss"))], run.folder / "loss.png",
                "iteration", "reconstruction loss", log_y=True)
    if run.preview is not None:
        _save_preview(run.folder / f"preview-iter{state.iteration}.png", run.model, run.preview, enc.BOOTSTRAP_RATIO)
    checkpoint: dict[str, Any] = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        **state.state_dict(),
        "encoder_args": run.architecture.to_dict(),
        "data": run.data.state_dict(),
        "rng": rng_state(),
        "config": run.cfg.to_ini(),
    }
    run.store.save(checkpoint, state.iteration)
    logger.info("encoder pretraining: iteration %d/%d, loss %.4f, %s", state.iteration, enc.NUM_ITER,
                state.loss, _duration(state.seconds))


def _save_pretrained(run: _PretrainRun, state: PretrainProgress) -> Path:
    """Write the encoder with what it was trained on (:func:`multipose.models.save_encoder`); its path."""
    cfg, enc = run.cfg, run.cfg.Encoder
    out_path = encoder_output_path(cfg)
    save_encoder(
        run.model.encoder,
        out_path,
        metadata={
            "source": "multipose encoder pretraining (train_encoder.py)",
            "iterations": int(state.iteration),
            "batch_size": int(enc.BATCH_SIZE),
            "learning_rate": float(enc.LEARNING_RATE),
            "bootstrap_ratio": int(enc.BOOTSTRAP_RATIO),
            "final_loss": None if state.loss is None else float(state.loss),
            "seconds": round(float(state.seconds), 2),
            "data_mesh": Path(cfg.Dataset.MODEL_PATH_DATA).name,
            "data_mesh_sha256": file_sha256(cfg.Dataset.MODEL_PATH_DATA),
            "config": cfg.to_ini(),
        },
    )
    logger.info("encoder pretraining done: %d iterations in %s, final loss %s; wrote %s", state.iteration,
                _duration(state.seconds), "n/a" if state.loss is None else f"{state.loss:.4f}", out_path)
    return out_path


def ensure_encoder(
    cfg: Config, device: torch.device | str, progress: bool = True, dist: Dist | None = None
) -> Encoder:
    """The encoder ``[Dataset] ENCODER_WEIGHTS`` names (eval mode, on the CPU), pretrained first when it
    is ``auto`` and ``<OUTPUT_PATH>/encoder.pt`` does not exist yet.

    Pretraining leaves the global RNG states as it found them (see :func:`pretrain_encoder`).
    """
    path = encoder_weights_path(cfg)
    if cfg.Dataset.ENCODER_WEIGHTS == "auto" and not path.exists():
        enc = cfg.Encoder
        logger.warning(
            "[Dataset] ENCODER_WEIGHTS = auto and %s does not exist: pretraining an encoder first, as "
            "train_encoder.py does (%s; [Encoder] NUM_ITER = %d iterations of %d crops on %s). Expected "
            "duration: measured and logged after the first iterations; on a 2-core CPU the small preset "
            "takes about 0.55 s per iteration of 64 crops, the aae preset ~25 s (use a GPU). To skip this, "
            "set ENCODER_WEIGHTS to an original AAE .npy or a multipose .pt.",
            path, requested_encoder_config(cfg).describe(), enc.NUM_ITER, enc.BATCH_SIZE, torch.device(device),
        )
        pretrain_encoder(cfg, device, progress=progress, dist=dist)
    return load_encoder(cfg)
