"""Generate a file of synthetic samples (AAE-style crops of the config's CAD model on backgrounds,
augmented as in training), e.g. a fixed validation set for [Dataset] VALID_DATA_PATH.

    python generate_dataset.py experiment_template.cfg --num 256 --out data/validationsets/template.npz
    python generate_dataset.py my.cfg --num 1000 --out valid.p --format pickle --seed 3

.npz: images (uint8 [N,S,S,3] RGB), Rs, ts, Ks (crop intrinsics, OpenCV), masks (object silhouette
before augmentation and occlusion) and meta (JSON: resolved config, mesh, seed). --format pickle
writes the original repository's {"Rs": [...], "images": [...]}. Rotations are OpenCV model-to-camera.
The file is written atomically; on any error nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from multipose.cli import make_parser, run
from multipose.config import Config, resolve_device
from multipose.errors import UserInputError

logger = logging.getLogger("generate_dataset")

_PICKLE_SUFFIXES = (".p", ".pkl", ".pickle")


def _output_format(out: Path, requested: str | None) -> str:
    suffix = out.suffix.lower()
    fmt = requested or ("pickle" if suffix in _PICKLE_SUFFIXES else "npz")
    if fmt == "npz" and suffix != ".npz":
        raise UserInputError(f"--out {out}: an .npz dataset file must end in .npz (or pass --format pickle)")
    if fmt == "pickle" and suffix not in _PICKLE_SUFFIXES:
        raise UserInputError(f"--out {out}: a pickle dataset file must end in {', '.join(_PICKLE_SUFFIXES)}")
    if out.is_dir():
        raise UserInputError(f"--out {out}: is a folder; give a file name")
    return fmt


def main(args: argparse.Namespace, cfg: Config) -> int:
    if args.num < 1:
        raise UserInputError(f"--num {args.num}: expected the number of samples, >= 1")
    out = Path(args.out)
    fmt = _output_format(out, args.format)
    from multipose.data.datasets import generate_samples  # heavy imports once the input is known good
    from multipose.data.io import save_samples

    device = resolve_device(cfg)
    seed = cfg.Training.RANDOM_SEED if args.seed is None else args.seed
    samples = generate_samples(cfg, args.num, seed, device)
    try:
        save_samples(out, samples, fmt)
    except OSError as exc:
        raise UserInputError(f"--out {out}: cannot write the file ({exc.strerror or exc})") from None
    logger.info("wrote %d samples (%d px, seed %d) to %s", len(samples), samples.image_size, seed, out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--num", type=int, required=True, metavar="N", help="number of samples")
    parser.add_argument("--out", required=True, metavar="FILE", help="output file (.npz, or .p/.pkl/.pickle)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: [Training] RANDOM_SEED)")
    parser.add_argument("--format", choices=("npz", "pickle"), default=None,
                        help="file format (default: from the file name)")
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser()))
