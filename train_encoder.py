"""Pretrain the AAE encoder: reconstruct clean renders from augmented crops on backgrounds.

    python train_encoder.py experiment_template.cfg
    python train_encoder.py my_experiment.cfg --set Encoder.NUM_ITER=40000 --set Encoder.ARCH=aae

Uses [Encoder]: ARCH, CHANNELS, LATENT_SIZE, BATCH_NORMALIZATION (the architecture), NUM_ITER,
BATCH_SIZE, LEARNING_RATE, BOOTSTRAP_RATIO, SAVE_INTERVAL, LOG_INTERVAL; the training crops of
[Dataset] / [Augmentation] and [Training] OUTPUT_PATH, RANDOM_SEED, DEVICE, SAVE_IMAGES. Writes
<OUTPUT_PATH>/encoder.pt (what [Dataset] ENCODER_WEIGHTS: auto loads; train.py pretrains it itself
when it is missing), config.cfg, and encoder/: checkpoints, train-loss.csv, loss.png and
preview-iter{N}.png (input | target | reconstruction). Re-running the same command resumes from the
newest checkpoint; a folder that holds a run with another config is refused unless --force. Under
torchrun (torchrun --standalone --nproc_per_node=N train_encoder.py CFG) each process reconstructs its
share of every batch, batch norm sees the whole batch, and rank 0 alone writes.
"""

from __future__ import annotations

import argparse
import sys

from multipose.app.cli import make_parser, run
from multipose.config import Config, resolve_device


def main(args: argparse.Namespace, cfg: Config) -> int:
    from contextlib import nullcontext

    from multipose.experiment.encoder_training import pretrain_encoder
    from multipose.infra.distributed import process_group  # heavy imports after the config is known to be valid
    from multipose.infra.runlock import run_folder_lock

    with process_group(resolve_device(cfg)) as (dist, device):  # torchrun: each rank trains on its share
        with run_folder_lock(cfg.Training.OUTPUT_PATH) if dist.is_main else nullcontext():  # one writer per folder
            path = pretrain_encoder(cfg, device, force=args.force, dist=dist)
    if dist.is_main:
        print(f"done: {cfg.Encoder.NUM_ITER} iterations; encoder written to {path}")
    return 0


if __name__ == "__main__":
    parser = make_parser(__doc__)
    parser.add_argument("--force", action="store_true", help="continue a run folder whose config differs")
    sys.exit(run(main, parser, preflight=True))
