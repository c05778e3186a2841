"""Evaluate a trained pose head: VSD recall of the top and best-of-K hypotheses against a random
(and, with --baseline codebook, the AAE codebook) baseline, with timings and model sizes.

    python evaluate.py experiment_template.cfg
    python evaluate.py my.cfg --checkpoint output/my/models/model-epoch50.pt --num 500 --baseline codebook
    python evaluate.py my.cfg --set Evaluation.TEST_DATA_PATH=data/tless/test_primesense --set Evaluation.OBJ_ID=10

The test set is [Evaluation] TEST_DATA_PATH: empty (synthetic samples made like the validation set), a
dataset file (.npz, or the original's pickle) or a BOP split folder. Writes metrics.json, per-sample.csv,
the BOP results CSV and (with [Evaluation] SAVE_IMAGES) recall.png, rotation-error.png and examples.png
to --out (default <OUTPUT_PATH>/evaluation) and prints the recall line; with --vis N, overlays/ holds the first
N images of a BOP split with the head's hypotheses (as predict.py --vis draws them) and the ground truth. Under torchrun
(torchrun --standalone --nproc_per_node=N evaluate.py CFG) each process scores its share of the test set and
rank 0 writes the results; there write --num-samples for --num (torchrun's own parser takes --num).
A whole BOP dataset: [Evaluation] CHECKPOINTS maps each object id to its train.py run, OBJ_ID is all (or a list),
and one results file per method holds every object's rows (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import os
import sys

from multipose.app.cli import make_parser, run
from multipose.config import Config
from multipose.infra.errors import ConfigError


def main(args: argparse.Namespace, cfg: Config) -> int:
    from multipose.config import resolve_device  # heavy imports after the config is known to be valid
    from multipose.experiment.dataset_evaluation import evaluate_dataset
    from multipose.experiment.evaluation import evaluate_checkpoint
    from multipose.infra.distributed import process_group

    if cfg.Evaluation.CHECKPOINTS:  # one run per object, the whole dataset
        if args.checkpoint:
            raise ConfigError("--checkpoint names one head, [Evaluation] CHECKPOINTS one per object: give one of them")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError("[Evaluation] CHECKPOINTS (one run per object) is evaluated by one process; run "
                              "evaluate.py without torchrun")
        result = evaluate_dataset(cfg, args.out, num_samples=args.num, codebook=True if args.baseline else None,
                                  trust=args.trust_checkpoint, vis=args.vis)
        print(f"{result.summary()}; results in {result.out_dir}")
        return 0
    with process_group(resolve_device(cfg)) as (dist, device):  # torchrun: each rank scores its share
        result = evaluate_checkpoint(
            cfg,
            args.checkpoint,
            device=device,
            out_dir=args.out,
            num_samples=args.num,
            codebook=True if "codebook" in args.baseline else None,
            trust=args.trust_checkpoint,
            dist=dist,
            vis=args.vis,
        )
    if dist.is_main:
        print(f"{result.summary()}; results in {result.out_dir}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="pose-head checkpoint (default <OUTPUT_PATH>/models/model-best.pt)")
    parser.add_argument("--num", "--num-samples", dest="num", type=_positive_int, metavar="N",
                        help="at most N test samples (default [Evaluation] NUM_SAMPLES)")
    parser.add_argument("--baseline", action="append", default=[], choices=["codebook"],
                        help="also evaluate the AAE codebook baseline (the random baseline always runs)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default <OUTPUT_PATH>/evaluation)")
    parser.add_argument("--vis", type=_positive_int, default=0, metavar="N",
                        help="a BOP split: draw the head's hypotheses and the ground truth on its first N images "
                             "(overlays/ in the output folder; with several objects in each object's obj<n>/)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a checkpoint that needs Python objects rebuilt (runs code named in the file); "
                             "only for files from a source you trust")
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), preflight=True, several_objects=True))
