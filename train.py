"""Train the pose head on the frozen encoder with the multi-pose loss.

    python train.py experiment_template.cfg
    python train.py my_experiment.cfg --set Training.NUM_ITER=50 --set Training.DEVICE=cuda

Several processes (one per GPU, or CPU processes): torchrun --standalone --nproc_per_node=N train.py CFG
(each trains on its share of every batch; results as with one process; only rank 0 writes). Re-running
the same command resumes from the newest checkpoint in [Training] OUTPUT_PATH (as the
original did); a folder that holds a run with another config is refused unless --force. With
[Dataset] ENCODER_WEIGHTS: auto the encoder is <OUTPUT_PATH>/encoder.pt, pretrained first when
missing (see train_encoder.py). Writes config.cfg, models/model-epoch{N}.pt, models/model-best.pt,
train-loss.csv, validation-loss.csv, loss.png, images/ and timings.json (wall seconds per phase of this
invocation: encoder_pretraining, caches, head_training, validation, figures, checkpoints, evaluation,
and the total) to OUTPUT_PATH. With [Evaluation]
AFTER_TRAINING (the default) model-best.pt is then evaluated as evaluate.py does (VSD recall against a
random baseline; OUTPUT_PATH/evaluation/) and the recall line is printed.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # timings.json's total counts from here (imports and pre-flight included)

import argparse  # noqa: E402
import sys  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from multipose.app.cli import make_parser, run  # noqa: E402
from multipose.config import Config, resolve_device  # noqa: E402

if TYPE_CHECKING:
    import torch

    from multipose.infra.distributed import Dist


def main(args: argparse.Namespace, cfg: Config) -> int:
    from multipose.infra.distributed import process_group  # heavy imports after the config is known to be valid

    with process_group(resolve_device(cfg)) as (dist, device):  # torchrun: this rank's process group and device
        return _train(args, cfg, dist, device)


def _train(args: argparse.Namespace, cfg: Config, dist: Dist, device: torch.device) -> int:
    import torch

    from multipose.experiment.pose_training import train_pose_head
    from multipose.experiment.run_folder import RunFolder
    from multipose.infra.timing import PhaseTimes

    times = PhaseTimes(RunFolder.of(cfg).timings,
                       notes={"device": str(device), "torch_threads": torch.get_num_threads()}, started=STARTED)

    evaluate = cfg.Evaluation.AFTER_TRAINING
    if evaluate:
        from multipose.experiment.testsets import check_evaluation_inputs
        from multipose.infra.errors import ConfigError

        try:
            check_evaluation_inputs(cfg)  # a bad test-set setting stops the run before it trains
        except ConfigError as exc:
            raise ConfigError(f"{exc} (or train without evaluating: --set Evaluation.AFTER_TRAINING=false)") from None
    from contextlib import nullcontext

    from multipose.infra.runlock import run_folder_lock

    with run_folder_lock(cfg.Training.OUTPUT_PATH) if dist.is_main else nullcontext():  # one writer per run folder
        result = train_pose_head(cfg, device, force=args.force, trust_checkpoints=args.trust_checkpoint, times=times,
                                 dist=dist)
    if dist.is_main:
        print(f"done: {result.last_epoch} epochs in {result.run_dir}; best validation {result.metric} "
              f"{result.best_validation:.4f} at epoch {result.best_epoch}"
              f"{' (stopped early)' if result.stopped_early else ''}")
    if evaluate:
        from multipose.experiment.evaluation import evaluate_checkpoint

        dist.barrier()  # model-best.pt is written
        with times.phase("evaluation"):
            evaluation = evaluate_checkpoint(cfg, device=device, dist=dist)  # the run's model-best.pt, shared out
        if dist.is_main:
            print(f"evaluation: {evaluation.summary()}; results in {evaluation.out_dir}")
    if dist.is_main:  # rank 0 writes timings.json
        times.notes["epochs"] = result.last_epoch
        times.save()
    return 0


if __name__ == "__main__":
    parser = make_parser(__doc__)
    parser.add_argument("--force", action="store_true", help="continue a run folder whose config differs")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load checkpoints (the run's, INIT_CHECKPOINT) that need Python objects rebuilt; "
                             "only for files from a source you trust")
    sys.exit(run(main, parser, preflight=True, several_objects=True))
