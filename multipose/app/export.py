"""Export a trained pose head with its encoder as one model file (TorchScript or ONNX), crop in, poses out.

    python -m multipose.app.export output/my_run/models/model-best.pt --format onnx --out my_run.onnx
    python -m multipose.app.export their/model-epoch50.pt --config their.cfg --format torchscript --out their.pt

Input: crops (B, S, S, 3) uint8 RGB, cut around a box as predict.py cuts them (S: the encoder's input size);
outputs: confidence (B, K) and R (B, K, 3, 3) in the crop's view (model to OpenCV camera); a head of N objects:
(B, N, K), (B, N, K, 3, 3) and, with its classifier, object_logits (B, N). The encoder is the one
of the run's config.cfg (or --config), checked to be the one the head was trained on. docs/inference.md shows how
to call the file from C++ and Python.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from multipose.app import cli
from multipose.inference.export import FORMATS

__all__ = ["main"]


def _export(args: argparse.Namespace) -> int:
    from multipose.experiment.estimators import export_checkpoint  # lazy: torch (--help stays fast)

    path = export_checkpoint(args.checkpoint, args.format, args.out, args.config, args.trust_checkpoint)
    print(f"exported {args.checkpoint} with its encoder as {args.format}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m multipose.app.export CKPT --format torchscript|onnx --out FILE [--config CFG]``."""
    parser = argparse.ArgumentParser(prog="python -m multipose.app.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", metavar="CKPT", help="a train.py checkpoint, e.g. <run>/models/model-best.pt")
    parser.add_argument("--format", required=True, choices=FORMATS, help="the model file's format")
    parser.add_argument("--out", required=True, metavar="FILE", help="the model file to write")
    parser.add_argument("--config", metavar="CFG",
                        help="the config whose encoder the head was trained on (default: <run>/config.cfg)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a checkpoint that needs Python objects rebuilt (runs code named in the file); "
                             "only for files from a source you trust")
    return cli.run_without_config(_export, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
