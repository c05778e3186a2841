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
from pathlib import Path
from typing import Any

import torch

from multipose.checkpoint import CheckpointStore
from multipose.config import Config, check_crop_size
from multipose.data.datasets import TrainingData, training_data_from_config
from multipose.data.sampling import derive_seed
from multipose.errors import UserInputError
from multipose.mesh import file_sha256
from multipose.models import Autoencoder, Encoder, bootstrapped_l2_loss, load_encoder, save_encoder
from multipose.models.weights import ENCODER_FILE, encoder_weights_path, requested_encoder_config
from multipose.progress import progress_bar
from multipose.runlock import StopRequest
from multipose.training.common import (
    MetricsLog,
    plot_curves,
    prepare_run_folder,
    rng_state,
    seed_everything,
    set_rng_state,
)
from multipose.visualize import image_grid, save_figure

logger = logging.getLogger(__name__)

__all__ = [
    "ENCODER_RUN_DIR",
    "KEEP_CHECKPOINTS",
    "PREVIEW_SAMPLES",
    "TRAIN_FIELDS",
    "encoder_output_path",
    "ensure_encoder",
    "pretrain_encoder",
]

#: Sub-folder of ``OUTPUT_PATH`` holding the pretraining checkpoints, metrics and figures.
ENCODER_RUN_DIR = "encoder"
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
    return Path(cfg.Training.OUTPUT_PATH) / ENCODER_FILE


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _fixed_samples(data: TrainingData, n: int, seed: int) -> dict[str, torch.Tensor]:
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
def _save_preview(path: Path, model: Autoencoder, samples: dict[str, torch.Tensor], ratio: int) -> None:
    """One row per sample: input | target | reconstruction (eval mode: batch-norm running statistics,
    so drawing a preview changes nothing in training)."""
    was_training = model.training
    model.eval()
    try:
        recon = model(samples["image"]).reconstruction
    finally:
        model.train(was_training)
    losses = [
        float(bootstrapped_l2_loss(r[None], t[None], ratio)) for r, t in zip(recon, samples["target"], strict=True)
    ]
    rows = [
        [img.permute(1, 2, 0).float().cpu().numpy() for img in (samples["image"][i], samples["target"][i], recon[i])]
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
) -> Path:
    """Pretrain (or resume pretraining) the encoder of ``cfg`` on ``device``; see the module docstring.

    Writes the encoder to :func:`encoder_output_path` and returns that path. Raises
    :class:`~multipose.errors.ConfigError` when the crop size is not the encoder's input size and
    :class:`~multipose.training.common.RunFolderError` when ``OUTPUT_PATH`` holds a run of another
    config (unless ``force``). The global RNG states are restored on return, so a caller that seeded
    them (the pose-head loop) draws the same numbers afterwards whether or not pretraining ran.

    ``stop_after`` ends the call after that iteration, as if the process were killed there (only the
    checkpoints due by then exist; the encoder file is written only when ``NUM_ITER`` is reached) --
    for testing resumption.
    """
    device = torch.device(device)
    architecture = requested_encoder_config(cfg)
    check_crop_size(cfg, architecture.image_size, f"the encoder to pretrain ({architecture.describe()})")
    run_dir = prepare_run_folder(cfg, force)
    saved_rng = rng_state()
    try:
        return _pretrain(cfg, device, run_dir, progress, stop_after)
    finally:
        set_rng_state(saved_rng)


def _pretrain(cfg: Config, device: torch.device, run_dir: Path, progress: bool, stop_after: int | None) -> Path:
    enc, seed = cfg.Encoder, cfg.Training.RANDOM_SEED
    architecture = requested_encoder_config(cfg)
    out_path = encoder_output_path(cfg)
    folder = run_dir / ENCODER_RUN_DIR

    seed_everything(seed)  # the initial weights
    model = Autoencoder.from_config(architecture).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=enc.LEARNING_RATE)
    data = training_data_from_config(cfg, device, progress=progress, with_target=True)
    preview = _fixed_samples(data, PREVIEW_SAMPLES, seed) if cfg.Training.SAVE_IMAGES else None

    store = CheckpointStore(folder, prefix="encoder", keep=KEEP_CHECKPOINTS)
    log = MetricsLog(folder / "train-loss.csv", TRAIN_FIELDS, step_field="iteration")
    iteration, elapsed = 0, 0.0
    latest = store.load_latest()
    if latest is not None:
        state, path = latest
        if state["encoder_args"] != architecture.to_dict():
            raise UserInputError(
                f"{path}: holds an autoencoder with {state['encoder_args']}, but [Encoder] asks for "
                f"{architecture.to_dict()}; delete {folder} to pretrain from scratch, or use another "
                "[Training] OUTPUT_PATH"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # --force may have changed it; same value otherwise
            group["lr"] = enc.LEARNING_RATE
        data.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        iteration, elapsed = state["iteration"], state["seconds"]
        logger.info("resuming encoder pretraining in %s from %s (iteration %d of %d)",
                    folder, path.name, iteration, enc.NUM_ITER)
        if iteration > enc.NUM_ITER:
            logger.warning("the checkpoint is past [Encoder] NUM_ITER = %d; keeping its weights", enc.NUM_ITER)
    else:
        logger.info(
            "pretraining the encoder (%s): %d iterations of %d crops, Adam lr %g, bootstrap ratio %d, on %s",
            architecture.describe(), enc.NUM_ITER, enc.BATCH_SIZE, enc.LEARNING_RATE, enc.BOOTSTRAP_RATIO, device,
        )
    log.truncate(iteration)

    def checkpoint(mean_loss: float | None) -> None:
        # figures first: the checkpoint commits the chunk, so a kill before it redraws them on re-run
        plot_curves([("train (bootstrapped L2)", *log.column("loss"))], folder / "loss.png",
                    "iteration", "reconstruction loss", log_y=True)
        if preview is not None:
            _save_preview(folder / f"preview-iter{iteration}.png", model, preview, enc.BOOTSTRAP_RATIO)
        state: dict[str, Any] = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "iteration": iteration,
            "seconds": elapsed,
            "loss": mean_loss,
            "encoder_args": architecture.to_dict(),
            "data": data.state_dict(),
            "rng": rng_state(),
            "config": cfg.to_ini(),
        }
        store.save(state, iteration)

    model.train()
    window_sum, window_len = torch.zeros((), device=device), 0
    last_loss = None
    first = iteration
    timer = time.perf_counter()
    timed_from: float | None = None
    bar = progress_bar(total=enc.NUM_ITER, initial=min(iteration, enc.NUM_ITER), desc="pretraining encoder",
               unit="it", disable=not progress, leave=False)
    with bar, StopRequest() as stop:
        while iteration < enc.NUM_ITER:
            stop.check(f"at encoder pretraining iteration {iteration + 1}")
            batch = data.batch(enc.BATCH_SIZE)
            out = model(batch["image"])
            loss = bootstrapped_l2_loss(out.reconstruction, batch["target"], enc.BOOTSTRAP_RATIO)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iteration += 1
            window_sum += loss.detach()
            window_len += 1
            bar.update(1)

            # the expected duration, once a few iterations after the warm-up one have been timed
            if iteration == first + 1:
                timed_from = time.perf_counter()
            elif timed_from is not None and iteration == first + 1 + _TIMED_ITERATIONS:
                per_iteration = (time.perf_counter() - timed_from) / _TIMED_ITERATIONS
                logger.info("encoder pretraining: %.2f s per iteration; about %s for the remaining %d iterations",
                            per_iteration, _duration(per_iteration * (enc.NUM_ITER - iteration)),
                            enc.NUM_ITER - iteration)

            due = iteration % enc.SAVE_INTERVAL == 0 or iteration == enc.NUM_ITER
            if due or iteration % enc.LOG_INTERVAL == 0:
                now = time.perf_counter()
                elapsed, timer = elapsed + (now - timer), now
                last_loss = float(window_sum / window_len)
                lr = optimizer.param_groups[0]["lr"]
                log.append({"iteration": iteration, "loss": last_loss, "lr": lr, "seconds": round(elapsed, 2)})
                bar.set_postfix(loss=f"{last_loss:.4f}")
                window_sum, window_len = torch.zeros((), device=device), 0
            if due:
                checkpoint(last_loss)
                logger.info("encoder pretraining: iteration %d/%d, loss %.4f, %s", iteration, enc.NUM_ITER,
                            last_loss, _duration(elapsed))
            if stop_after is not None and iteration >= stop_after and iteration < enc.NUM_ITER:
                logger.info("encoder pretraining stopped after iteration %d (stop_after)", iteration)
                return out_path

    if latest is not None and first >= enc.NUM_ITER:
        last_loss = latest[0].get("loss")
    save_encoder(
        model.encoder,
        out_path,
        metadata={
            "source": "multipose encoder pretraining (train_encoder.py)",
            "iterations": int(iteration),
            "batch_size": int(enc.BATCH_SIZE),
            "learning_rate": float(enc.LEARNING_RATE),
            "bootstrap_ratio": int(enc.BOOTSTRAP_RATIO),
            "final_loss": None if last_loss is None else float(last_loss),
            "seconds": round(float(elapsed), 2),
            "data_mesh": Path(cfg.Dataset.MODEL_PATH_DATA[0]).name,
            "data_mesh_sha256": file_sha256(cfg.Dataset.MODEL_PATH_DATA[0]),
            "config": cfg.to_ini(),
        },
    )
    logger.info("encoder pretraining done: %d iterations in %s, final loss %s; wrote %s", iteration,
                _duration(elapsed), "n/a" if last_loss is None else f"{last_loss:.4f}", out_path)
    return out_path


def ensure_encoder(cfg: Config, device: torch.device | str, progress: bool = True) -> Encoder:
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
        pretrain_encoder(cfg, device, progress=progress)
    return load_encoder(cfg)
